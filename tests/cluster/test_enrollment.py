"""Joining the cluster is enrolling: a machine that runs a join line becomes its user's
online host within 10 s with no other command, offline within 10 s of its node dying,
with the same host id when it joins again; nobody else sees or uses it; a join key the
server did not issue, or none, makes no host; a node or driver without the cluster
token is refused; `omnigent host` joins through the API and supervises its node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.cluster.helpers import launch, new_session, pid_alive, wait_status
from tests.procs import BIN, HostCommand, RayNode, base_env, make_home


def _online_after(node: RayNode, client, timeout: float = 60) -> float:
    node.wait_host(client, timeout)
    return time.monotonic() - node.started_at


def test_join_line_enrolls_offline_on_death_same_id_on_rejoin(world):
    home = make_home("joiner")
    node = RayNode(world.server, "127.0.0.14", home, name="joiner")
    try:
        took = _online_after(node, world.alice)
        print(f"join line -> online host: {took:.1f}s")
        assert took < 10, f"online only {took:.1f}s after the join line ran"
        host = world.alice.get(f"/v1/hosts/{node.host_id}").json()
        assert host["name"] == "joiner" and host["owner"] == world.server.join_key.split(".")[0]
        # it runs things on that machine: a runner in a workspace under its own HOME
        s = new_session(world.alice)
        r = launch(world.alice, node.host_id, s["id"], home)
        assert r.status_code == 200, r.text
        runner_id = r.json()["runner_id"]

        node.kill()
        killed = time.monotonic()
        wait_status(world.alice, node.host_id, "offline", timeout=10)
        print(f"node killed -> offline: {time.monotonic() - killed:.1f}s")
        r = world.alice.get(f"/v1/hosts/{node.host_id}/filesystem")
        assert r.status_code == 409 and r.json()["error"]["code"] == "host_offline"
        deadline = time.monotonic() + 20
        while world.alice.get(f"/v1/runners/{runner_id}").json()["status"] != "runner_failed":
            assert time.monotonic() < deadline, "the runner on the dead node never failed"
            time.sleep(0.2)

        again = RayNode(world.server, "127.0.0.14", home, name="joiner")  # same machine
        try:
            assert again.host_id == node.host_id
            assert _online_after(again, world.alice) < 10
            ids = [h["id"] for h in world.alice.get("/v1/hosts").json()["hosts"]]
            assert ids.count(node.host_id) == 1
            assert world.alice.get(f"/v1/hosts/{node.host_id}/filesystem").status_code == 200
        finally:
            again.kill()
        world.alice.delete(f"/v1/sessions/{s['id']}")
    finally:
        node.kill()


def test_another_user_neither_sees_nor_uses_the_host(world):
    hosts = world.bob.get("/v1/hosts").json()["hosts"]
    assert [h["id"] for h in hosts] == [world.host_bob]
    assert world.bob.get(f"/v1/hosts/{world.host_a}").status_code == 403
    assert world.bob.get(f"/v1/hosts/{world.host_a}/filesystem").status_code == 403
    s = new_session(world.bob)
    r = launch(world.bob, world.host_a, s["id"], world.node_a.home)
    assert r.status_code == 403, r.text
    # and bob's machine is bob's: alice cannot use it
    assert world.alice.get(f"/v1/hosts/{world.host_bob}").status_code == 403
    alice_s = new_session(world.alice)
    r = launch(world.alice, world.host_bob, alice_s["id"], world.node_bob.home)
    assert r.status_code == 403, r.text


def test_no_or_forged_join_key_makes_no_host(world):
    """A machine cannot become someone's host without that person's join line: with the
    cluster token but a key for bob with a made-up MAC, or no key, the node joins Ray but
    no host appears for anybody."""
    before_alice = {h["id"] for h in world.alice.get("/v1/hosts").json()["hosts"]}
    before_bob = {h["id"] for h in world.bob.get("/v1/hosts").json()["hosts"]}
    forged = RayNode(
        world.server, "127.0.0.17", make_home("forged"), join_key="bob." + "0" * 32
    ).wait_started()
    plain = None
    try:
        plain = RayNode(
            world.server, "127.0.0.18", make_home("plain"), join_key=None
        ).wait_started()
        time.sleep(8)  # well past the time an enrollment takes
        assert {h["id"] for h in world.alice.get("/v1/hosts").json()["hosts"]} == before_alice
        assert {h["id"] for h in world.bob.get("/v1/hosts").json()["hosts"]} == before_bob
    finally:
        forged.kill()
        if plain:
            plain.kill()


def test_node_and_driver_without_the_cluster_token_are_refused(world):
    node = RayNode(world.server, "127.0.0.19", make_home("stranger"), ray_token=None)
    try:
        node.proc.popen.wait(90)
        out = "\n".join(node.proc.lines)
        assert node.proc.popen.returncode != 0, out
        assert "InvalidAuthToken" in out or "uthentication" in out, out
    finally:
        node.kill()
    for env in (
        {"RAY_AUTH_MODE": "disabled"},
        {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"},
    ):
        code = f"import ray; ray.init(address={world.server.ray_address!r}); print('CONNECTED')"
        out = subprocess.run(
            [str(BIN / "python"), "-c", code],
            capture_output=True,
            text=True,
            env=base_env(make_home("driver"), **env),
            timeout=120,
        )
        assert "CONNECTED" not in out.stdout, (env, out.stdout)
        assert out.returncode != 0


def test_omnigent_host_joins_through_the_api_and_stops_its_node(world):
    home = make_home("host-cmd")
    cmd = HostCommand(world.server, world.server.token, "127.0.0.20", home)
    try:
        host_id = cmd.wait_registered()
        assert world.alice.get(f"/v1/hosts/{host_id}").json()["status"] == "online"
        names = [
            e["name"] for e in world.alice.get(f"/v1/hosts/{host_id}/filesystem").json()["data"]
        ]
        assert "api_token" in names  # its own HOME
        cmd.stop()
        wait_status(world.alice, host_id, "offline", timeout=10)
        # the node it started is gone with it
        assert cmd.proc.popen.poll() is not None
        again = HostCommand(world.server, world.server.token, "127.0.0.20", home)
        try:
            assert again.wait_registered() == host_id
        finally:
            again.stop()
    finally:
        cmd.stop()


def test_a_killed_omnigent_host_leaves_its_node_and_the_next_one_supervises_it(world):
    """The host daemon SIGKILLed: its node (own process session) stays joined and the
    host online; `omnigent host` again supervises that node, not a second one."""
    home = make_home("host-killed")
    record = Path(home, ".omnigent", "host-node.json")
    cmd = HostCommand(world.server, world.server.token, "127.0.0.23", home)
    again = None
    node_pid = None
    try:
        host_id = cmd.wait_registered()
        node_pid = json.loads(record.read_text())["pid"]
        cmd.proc.popen.kill()
        cmd.proc.popen.wait(10)
        time.sleep(4)  # longer than a dead node takes to read offline (~3 s)
        assert world.alice.get(f"/v1/hosts/{host_id}").json()["status"] == "online"
        assert pid_alive(node_pid)
        again = HostCommand(world.server, world.server.token, "127.0.0.23", home)
        assert again.wait_registered() == host_id
        assert json.loads(record.read_text())["pid"] == node_pid  # no second node
        again.stop()
        wait_status(world.alice, host_id, "offline", timeout=10)
        deadline = time.monotonic() + 20
        while pid_alive(node_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(node_pid)
    finally:
        if again is not None:
            again.stop()
        cmd.stop()
        if node_pid is not None and pid_alive(node_pid):
            os.killpg(node_pid, signal.SIGKILL)


def test_host_programs_get_the_owners_environment_without_secrets(world):
    """Shells on a host run with the HOME of the machine's owner (the node's), and
    neither the cluster token nor the join key reaches them."""
    s = new_session(world.alice, host_id=world.host_b, workspace=world.node_b.home)
    try:
        r = world.alice.post(
            f"/v1/sessions/{s['id']}/resources/environments/default/shell", json={"command": "env"}
        )
        assert r.status_code == 200, r.text
        env = dict(line.split("=", 1) for line in r.json()["stdout"].splitlines() if "=" in line)
        assert env["HOME"] == world.node_b.home
        assert not [k for k in env if k.startswith(("RAY_", "OMNIGENT_"))], sorted(env)
        assert world.server.ray_token not in r.json()["stdout"]
        assert world.server.join_key not in r.json()["stdout"]
    finally:
        world.alice.delete(f"/v1/sessions/{s['id']}")
