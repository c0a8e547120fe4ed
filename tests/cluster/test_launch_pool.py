"""Launches through the host's pool of pre-started runners: semantics under the fast path
(races with deletes, dead pooled runners, hosts dying mid-launch) and the change tracker
catching edits made during and right after a launch."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cluster.helpers import launch, new_session, pid_alive
from tests.procs import RayNode

ENV = "/resources/environments/default"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _runner_pids(node: RayNode) -> list[int]:
    """The RunnerActor processes of a node: workers of its raylet (which is in the node's
    process group; each worker has a group of its own)."""
    pgid = os.getpgid(node.proc.popen.pid)
    pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
    raylets = set()
    for pid in pids:
        try:
            if os.getpgid(pid) == pgid and "raylet/raylet" in _cmdline(pid):
                raylets.add(pid)
        except OSError:
            pass
    return [p for p in pids if _ppid(p) in raylets and _cmdline(p).startswith("ray::RunnerActor")]


def _in_workspace(pids: list[int], ws: str) -> list[int]:
    out = []
    for pid in pids:
        try:
            if os.readlink(f"/proc/{pid}/cwd") == ws and pid_alive(pid):
                out.append(pid)
        except OSError:
            pass
    return out


def _wait(cond, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def pool_node(world):
    """A host of alice's with a pool of one runner, idle until the test uses it."""
    node = RayNode(world.server, "127.0.0.18", name="pool-node").wait_started()
    try:
        node.host = node.wait_host(world.alice)
        yield node
    finally:
        node.kill()


def _ready(world, host: str, sid: str, timeout: float = 30) -> float:
    t0 = time.monotonic()
    _wait(
        lambda: world.alice.get(f"/v1/sessions/{sid}{ENV}/filesystem").status_code == 200,
        timeout,
        "the environment",
    )
    return time.monotonic() - t0


def test_a_launch_takes_a_pooled_runner_and_the_pool_fills_again(world, pool_node):
    ws = os.path.join(pool_node.home, "ws-pool")
    os.makedirs(ws, exist_ok=True)
    pooled = _wait(lambda: _runner_pids(pool_node), 60, "a pooled runner")
    assert _in_workspace(pooled, ws) == []  # a pooled runner has no workspace yet
    s = new_session(world.alice)
    r = launch(world.alice, pool_node.host, s["id"], ws)
    assert r.status_code == 200, r.text
    runner = world.alice.get(f"/v1/runners/{r.json()['runner_id']}").json()
    assert runner["pid"] in pooled and os.readlink(f"/proc/{runner['pid']}/cwd") == ws
    _ready(world, pool_node.host, s["id"])
    # another runner is started to take its place
    _wait(lambda: set(_runner_pids(pool_node)) - set(pooled), 60, "the pool to fill again")


def test_a_pooled_runner_that_died_is_never_handed_out(world, pool_node):
    ws = os.path.join(pool_node.home, "ws-dead")
    os.makedirs(ws, exist_ok=True)
    for _ in range(2):  # twice: the second time the pool has refilled after the first
        idle = _wait(
            lambda: [p for p in _runner_pids(pool_node) if not _cwd_is_ws(p)],
            60,
            "a pooled runner",
        )
        for pid in idle:
            os.kill(pid, signal.SIGKILL)
        s = new_session(world.alice)
        t0 = time.monotonic()
        r = launch(world.alice, pool_node.host, s["id"], ws)
        assert r.status_code == 200, r.text
        assert time.monotonic() - t0 < 30
        runner = world.alice.get(f"/v1/runners/{r.json()['runner_id']}").json()
        assert runner["status"] == "running" and runner["pid"] not in idle
        assert pid_alive(runner["pid"]) and os.readlink(f"/proc/{runner['pid']}/cwd") == ws
        _ready(world, pool_node.host, s["id"])
        r = world.alice.post(f"/v1/sessions/{s['id']}{ENV}/shell", json={"command": "pwd"})
        assert r.status_code == 200 and r.json()["stdout"].strip() == ws


def _cwd_is_ws(pid: int) -> bool:
    try:
        return "/ws-" in os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return True


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02, 0.06])
def test_a_launch_racing_a_delete_leaves_no_runner(world, pool_node, delay):
    ws = os.path.join(pool_node.home, f"ws-race-{int(delay * 1000)}")
    os.makedirs(ws, exist_ok=True)
    s = new_session(world.alice)

    def delete():
        time.sleep(delay)
        return world.alice.delete(f"/v1/sessions/{s['id']}")

    with ThreadPoolExecutor(2) as ex:
        launched = ex.submit(launch, world.alice, pool_node.host, s["id"], ws)
        deleted = ex.submit(delete)
        r, d = launched.result(), deleted.result()
    assert d.status_code == 200 and d.json()["deleted"] is True
    assert r.status_code in (200, 400, 404), r.text
    if r.status_code != 200:
        assert r.json()["error"]["code"] in ("session_not_found", "runner_already_bound")
    assert world.alice.get(f"/v1/sessions/{s['id']}").status_code == 404
    # whatever the order, no runner is left working in that workspace
    _wait(lambda: not _in_workspace(_runner_pids(pool_node), ws), 15, "the runner to stop")
    if r.status_code == 200:
        runner = world.alice.get(f"/v1/runners/{r.json()['runner_id']}").json()
        assert runner["status"] in ("runner_exited", "runner_failed")


def test_concurrent_launches_through_the_pool_give_one_winner(world, pool_node):
    ws = os.path.join(pool_node.home, "ws-cas")
    os.makedirs(ws, exist_ok=True)
    s = new_session(world.alice)
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: launch(world.alice, pool_node.host, s["id"], ws), range(4)))
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 400, 400, 400], [r.text for r in results]
    assert all(
        r.json()["error"]["code"] == "runner_already_bound" for r in results if r.status_code == 400
    )
    winner = next(r for r in results if r.status_code == 200).json()["runner_id"]
    assert world.alice.get(f"/v1/sessions/{s['id']}").json()["runner_id"] == winner
    # the losers' runners went back to the pool or away: one runner works there
    time.sleep(1)
    assert len(_in_workspace(_runner_pids(pool_node), ws)) == 1


def test_a_host_dying_mid_launch_gives_host_offline_and_rolls_back(world, tmp_path):
    node = RayNode(
        world.server, "127.0.0.19", str(tmp_path), env={"OMNIGENT_FAULT_RUNNER_START": "delay:4"}
    ).wait_started()
    try:
        host = node.wait_host(world.alice)
        s = new_session(world.alice)
        with ThreadPoolExecutor(1) as ex:
            t0 = time.monotonic()
            launched = ex.submit(launch, world.alice, host, s["id"], str(tmp_path))
            time.sleep(1.5)  # the host is inside launch_runner now
            node.kill()
            r = launched.result(timeout=60)
            took = time.monotonic() - t0
        assert r.status_code == 409 and r.json()["error"]["code"] == "host_offline", r.text
        assert took < 15  # failed fast, not after the launch timeout
        session = world.alice.get(f"/v1/sessions/{s['id']}").json()
        assert session["status"] == "idle" and session["runner_id"] is None
        # the session can be launched elsewhere at once
        r = launch(world.alice, world.host_a, s["id"], world.node_a.home)
        assert r.status_code == 200, r.text
    finally:
        node.kill()


def test_changes_made_during_and_right_after_a_launch_are_caught(world, pool_node):
    ws = Path(pool_node.home) / "ws-changes"
    for i in range(2000):
        d = ws / f"d{i // 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.txt").write_text(f"first {i}\n" * 50)
    s = new_session(world.alice)
    stop = threading.Event()
    during = ws / "d19" / "f1999.txt"  # the walk's last directory: still being walked

    def keep_writing():
        n = 0
        while not stop.is_set():
            n += 1
            during.write_text(f"during {n}\n")
            time.sleep(0.002)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        r = launch(world.alice, pool_node.host, s["id"], str(ws))
        assert r.status_code == 200, r.text
        time.sleep(0.05)  # still writing after the acknowledgement
    finally:
        stop.set()
        writer.join()
    base = f"/v1/sessions/{s['id']}{ENV}"
    # right after: through the API, directly on disk, and by a shell command
    w = world.alice.put(f"{base}/filesystem/d0/f0.txt", json={"content": "api\n"})
    assert w.status_code == 200, w.text
    (ws / "d5" / "f500.txt").write_text("disk\n")
    os.unlink(ws / "d7" / "f700.txt")
    sh = world.alice.post(f"{base}/shell", json={"command": "echo made > new.txt"})
    assert sh.status_code == 200 and sh.json()["exit_code"] == 0
    got = world.alice.get(f"{base}/changes")
    assert got.status_code == 200, got.text
    listed = {e["path"]: e["status"] for e in got.json()["data"]}
    assert listed == {
        "d19/f1999.txt": "modified",
        "d0/f0.txt": "modified",
        "d5/f500.txt": "modified",
        "d7/f700.txt": "deleted",
        "new.txt": "created",
    }
    # a write through the API waited for the baseline: its diff has the first bytes
    d = world.alice.get(f"{base}/diff/d0/f0.txt")
    assert d.status_code == 200 and d.json()["before"] == "first 0\n" * 50
    assert d.json()["after"] == "api\n"
