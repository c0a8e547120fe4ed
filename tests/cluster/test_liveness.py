"""Hosts go offline within 10 s when their daemon exits or their node dies; runners
already started keep running when only the daemon went away."""

from __future__ import annotations

import signal
import time

import pytest

from tests.cluster.helpers import launch, new_session, pid_alive, wait_status
from tests.procs import Daemon, RayNode


def _restart_daemon(world, key: str, node_ip: str) -> str:
    old = world.daemons[key]
    world.daemons[key] = Daemon(world.server, world.server.token, node_ip, old.home)
    return world.daemons[key].wait_registered()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_daemon_exit_takes_host_offline_runner_survives(world, sig):
    s = new_session(world.alice)
    r = launch(world.alice, world.host_a, s["id"], world.node_a.home)
    assert r.status_code == 200, r.text
    runner = world.alice.get(f"/v1/runners/{r.json()['runner_id']}").json()

    world.daemons["a"].stop(sig)
    seconds = wait_status(world.alice, world.host_a, "offline", timeout=10)
    assert seconds < 10
    r = world.alice.get(f"/v1/hosts/{world.host_a}/filesystem")
    assert r.status_code == 409 and r.json()["error"]["code"] == "host_offline"
    s2 = new_session(world.alice)
    r = launch(world.alice, world.host_a, s2["id"], world.node_a.home)
    assert r.status_code == 409
    # the runner started before is still there and still bound
    assert pid_alive(runner["pid"])
    assert world.alice.get(f"/v1/runners/{runner['runner_id']}").json()["status"] == "running"
    assert world.alice.get(f"/v1/hosts/{world.host_a}").json()["runner_count"] >= 1

    # the daemon comes back: same host id (stable machine identity), online again
    assert _restart_daemon(world, "a", world.node_a.ip) == world.host_a
    assert world.alice.get(f"/v1/hosts/{world.host_a}").json()["status"] == "online"
    assert world.alice.get(f"/v1/hosts/{world.host_a}/filesystem").status_code == 200
    world.alice.delete(f"/v1/sessions/{s['id']}")


def test_killed_node_takes_host_offline_and_fails_its_runners(world, tmp_path):
    node = RayNode(world.server, "127.0.0.14", str(tmp_path)).wait_started()
    daemon = Daemon(world.server, world.server.token, node.ip, str(tmp_path))
    try:
        host = daemon.wait_registered()
        s = new_session(world.alice)
        r = launch(world.alice, host, s["id"], str(tmp_path))
        assert r.status_code == 200, r.text
        runner_id = r.json()["runner_id"]
        node.kill()  # the whole node: raylet, workers, the runner
        assert wait_status(world.alice, host, "offline", timeout=10) < 10
        r = world.alice.get(f"/v1/hosts/{host}/filesystem")
        assert r.status_code == 409
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if world.alice.get(f"/v1/runners/{runner_id}").json()["status"] == "runner_failed":
                break
            time.sleep(0.2)
        assert world.alice.get(f"/v1/runners/{runner_id}").json()["status"] == "runner_failed"
        assert world.alice.get(f"/v1/sessions/{s['id']}").json()["status"] == "runner_failed"
    finally:
        daemon.stop()
        node.kill()
