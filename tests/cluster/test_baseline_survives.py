"""Change history survives runners (issue 12): a session's baseline lives with the
session on its host, so a new runner for the same session and workspace reports the same
`changes` and `diff`, including what changed while no runner ran; deleting the session
removes the baseline.

Real cluster, real runners; a runner is stopped as the server stops one (its `stop`,
called by a Ray driver), killed with SIGKILL, or its whole node is killed and started
again (a host reboot).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.cluster.helpers import env_url, launch, launched, make_workspace, pid_alive, put_files
from tests.procs import BIN, RayNode, base_env, make_home

FILES = {
    "keep.txt": "keep at start\n",
    "api.txt": "api at start\n",
    "disk.txt": "disk at start\n",
    "down.txt": "down at start\n",
    "gone.txt": "gone at start\n",
    "sub/deep.txt": "deep at start\n",
}


def _changes(client, sid: str) -> dict[str, str]:
    r = client.get(env_url(sid, "/changes"))
    assert r.status_code == 200, r.text
    return {c["path"]: c["status"] for c in r.json()["data"]}


def _diffs(client, sid: str, paths) -> dict[str, dict]:
    out = {}
    for path in paths:
        r = client.get(env_url(sid, f"/diff/{path}"))
        assert r.status_code == 200, (path, r.text)
        out[path] = r.json()
    return out


def _wait_session(client, sid: str, statuses: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        session = client.get(f"/v1/sessions/{sid}").json()
        if session["status"] in statuses:
            return session
        assert time.monotonic() < deadline, session
        time.sleep(0.1)


def _baseline_dir(world, home: str, sid: str) -> str:
    ns = world.alice.get("/v1/cluster").json()["namespace"]
    return os.path.join(home, ".omnigent", "baselines", ns, sid)


def _wait_complete(path: str, timeout: float = 30) -> dict:
    """The stored baseline's manifest, once it says complete."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(os.path.join(path, "manifest.json")) as f:
                manifest = json.load(f)
            if manifest["complete"]:
                return manifest
        except (OSError, ValueError):
            pass
        assert time.monotonic() < deadline, f"no complete baseline in {path}"
        time.sleep(0.1)


def _change_through_a_runner(client, sid: str, ws: str) -> dict[str, str]:
    """Changes made while the first runner runs: through the API and on disk."""
    r = client.put(env_url(sid, "/filesystem/api.txt"), json={"content": "api changed\n"})
    assert r.status_code == 200, r.text
    r = client.put(env_url(sid, "/filesystem/api_new.txt"), json={"content": "api created\n"})
    assert r.status_code in (200, 201), r.text
    put_files(ws, {"disk.txt": "disk changed\n"})
    seen = _changes(client, sid)
    assert seen == {"api.txt": "modified", "api_new.txt": "created", "disk.txt": "modified"}
    return seen


def _change_while_down(ws: str) -> dict[str, str]:
    put_files(ws, {"down.txt": "changed while no runner ran\n", "sub/new.txt": "new\n"})
    os.unlink(os.path.join(ws, "gone.txt"))
    return {"down.txt": "modified", "sub/new.txt": "created", "gone.txt": "deleted"}


def _relaunch_sees_it_all(client, host: str, sid: str, ws: str, seen, seen_diffs, down):
    old_runner = client.get(f"/v1/sessions/{sid}").json()["runner_id"]
    r = launch(client, host, sid, ws)
    assert r.status_code == 200, r.text
    assert r.json()["runner_id"] != old_runner
    assert _changes(client, sid) == {**seen, **down}
    assert _diffs(client, sid, seen) == seen_diffs  # the first runner's, `before` intact
    d = _diffs(client, sid, down)
    assert (d["down.txt"]["before"], d["down.txt"]["after"]) == (
        "down at start\n",
        "changed while no runner ran\n",
    )
    assert (d["gone.txt"]["before"], d["gone.txt"]["after"]) == ("gone at start\n", None)
    assert (d["sub/new.txt"]["before"], d["sub/new.txt"]["after"]) == (None, "new\n")
    # the new runner goes on tracking against the same baseline
    r = client.put(env_url(sid, "/filesystem/keep.txt"), json={"content": "keep changed\n"})
    assert r.status_code == 200, r.text
    r = client.put(env_url(sid, "/filesystem/disk.txt"), json={"content": "disk at start\n"})
    assert r.status_code == 200, r.text
    now = _changes(client, sid)
    assert now["keep.txt"] == "modified" and "disk.txt" not in now
    assert _diffs(client, sid, ["keep.txt"])["keep.txt"]["before"] == "keep at start\n"


@pytest.fixture
def sessions(world):
    made: list[str] = []
    yield made
    for sid in made:
        world.alice.delete(f"/v1/sessions/{sid}")


def _stop_runner(world, runner_id: str) -> None:
    """Stop a runner as the server does (its `stop`), from a Ray driver on the server's
    node: the API has no route that stops a runner and keeps its session."""
    info = world.alice.get("/v1/cluster").json()
    code = (
        "import ray\n"
        f"ray.init(address={info['ray_address']!r}, namespace={info['namespace']!r},"
        " _node_ip_address='127.0.0.10', log_to_driver=False)\n"
        f"ray.get(ray.get_actor({runner_id!r}).stop.remote(), timeout=30)\n"
        "print('STOPPED')\n"
    )
    env = base_env(
        make_home("driver"), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=world.server.ray_token
    )
    out = subprocess.run(
        [str(BIN / "python"), "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert "STOPPED" in out.stdout, out.stdout + out.stderr


def test_relaunch_after_the_runner_stopped_keeps_changes_and_diffs(world, sessions):
    c = world.alice
    ws = make_workspace(world.node_a.home, FILES)
    sid = launched(c, world.host_a, ws)
    sessions.append(sid)
    stored = _baseline_dir(world, world.node_a.home, sid)
    seen = _change_through_a_runner(c, sid, ws)
    seen_diffs = _diffs(c, sid, seen)
    assert _wait_complete(stored)["root"] == ws

    runner_id = c.get(f"/v1/sessions/{sid}").json()["runner_id"]
    _stop_runner(world, runner_id)
    _wait_session(c, sid, {"runner_exited"})
    assert c.get(env_url(sid, "/changes")).status_code == 503  # no runner now
    assert os.path.isdir(stored)  # a runner that stops leaves the session's baseline
    down = _change_while_down(ws)
    _relaunch_sees_it_all(c, world.host_a, sid, ws, seen, seen_diffs, down)


def test_relaunch_after_the_runner_was_killed_keeps_changes_and_diffs(world, sessions):
    c = world.alice
    ws = make_workspace(world.node_a.home, FILES)
    sid = launched(c, world.host_a, ws)
    sessions.append(sid)
    seen = _change_through_a_runner(c, sid, ws)
    seen_diffs = _diffs(c, sid, seen)
    _wait_complete(_baseline_dir(world, world.node_a.home, sid))

    runner = c.get(f"/v1/runners/{c.get(f'/v1/sessions/{sid}').json()['runner_id']}").json()
    os.kill(runner["pid"], signal.SIGKILL)
    _wait_session(c, sid, {"runner_failed"})
    assert not pid_alive(runner["pid"])
    down = _change_while_down(ws)
    _relaunch_sees_it_all(c, world.host_a, sid, ws, seen, seen_diffs, down)


def test_another_workspace_for_the_session_starts_from_that_workspace(world, sessions):
    c = world.alice
    ws = make_workspace(world.node_a.home, FILES)
    sid = launched(c, world.host_a, ws)
    sessions.append(sid)
    _change_through_a_runner(c, sid, ws)
    stored = _baseline_dir(world, world.node_a.home, sid)
    _wait_complete(stored)
    runner = c.get(f"/v1/runners/{c.get(f'/v1/sessions/{sid}').json()['runner_id']}").json()
    os.kill(runner["pid"], signal.SIGKILL)
    _wait_session(c, sid, {"runner_failed"})
    other = make_workspace(world.node_a.home, {"x.txt": "x\n"})
    assert launch(c, world.host_a, sid, other).status_code == 200
    assert _changes(c, sid) == {}
    assert _wait_complete(stored)["root"] == other


def test_deleting_the_session_removes_its_baseline_on_the_host(world):
    c = world.alice
    for runner_live in (True, False):
        ws = make_workspace(world.node_a.home, FILES)
        sid = launched(c, world.host_a, ws)
        stored = _baseline_dir(world, world.node_a.home, sid)
        _change_through_a_runner(c, sid, ws)
        _wait_complete(stored)
        if not runner_live:  # its runner died earlier: the host is told all the same
            runner = c.get(f"/v1/runners/{c.get(f'/v1/sessions/{sid}').json()['runner_id']}")
            os.kill(runner.json()["pid"], signal.SIGKILL)
            _wait_session(c, sid, {"runner_failed"})
            assert os.path.isdir(stored)
        assert c.delete(f"/v1/sessions/{sid}").status_code == 200
        assert not os.path.exists(stored), runner_live
        with open(os.path.join(ws, "api.txt")) as f:  # the workspace itself is left as is
            assert f.read() == "api changed\n"


def test_host_reboot_keeps_changes_and_sweeps_deleted_sessions(world):
    """The whole node dies (its runners with it) and starts again with the same HOME:
    a relaunch finds the session's baseline; a session deleted while the host was down
    has its baseline removed when the host is back (the host's sweep)."""
    c = world.alice
    home = make_home("reboot")
    node = RayNode(world.server, "127.0.0.23", home).wait_started()
    sids: list[str] = []
    try:
        host = node.wait_host(c)
        ws = make_workspace(home, FILES)
        sid = launched(c, host, ws)
        sids.append(sid)
        seen = _change_through_a_runner(c, sid, ws)
        seen_diffs = _diffs(c, sid, seen)
        _wait_complete(_baseline_dir(world, home, sid))
        doomed_ws = make_workspace(home, {"a.txt": "a\n"})
        doomed = launched(c, host, doomed_ws)
        sids.append(doomed)
        doomed_dir = _baseline_dir(world, home, doomed)
        _wait_complete(doomed_dir)

        node.kill()
        _wait_session(c, sid, {"runner_failed"})
        _wait_session(c, doomed, {"runner_failed"})
        assert c.delete(f"/v1/sessions/{doomed}").status_code == 200
        assert os.path.isdir(doomed_dir)  # the host was down: left to its sweep
        down = _change_while_down(ws)

        node = RayNode(world.server, "127.0.0.23", home).wait_started()
        assert node.wait_host(c) == host  # the same machine, the same host
        deadline = time.monotonic() + 30
        while os.path.exists(doomed_dir):
            assert time.monotonic() < deadline, "the deleted session's baseline is still there"
            time.sleep(0.2)
        _relaunch_sees_it_all(c, host, sid, ws, seen, seen_diffs, down)
    finally:
        for s in sids:
            c.delete(f"/v1/sessions/{s}")
        node.kill()
