"""Launching runners on hosts: placement, binding compare-and-set, git worktrees."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cluster.helpers import launch, new_session, pid_alive, proc_env
from tests.procs import RayNode


def _runner(world, runner_id):
    r = world.alice.get(f"/v1/runners/{runner_id}")
    assert r.status_code == 200, r.text
    return r.json()


def test_launch_lands_on_the_hosts_node(world):
    for host, node in ((world.host_a, world.node_a), (world.host_b, world.node_b)):
        ws = Path(node.home) / "ws-launch"
        ws.mkdir(exist_ok=True)
        s = new_session(world.alice)
        r = launch(world.alice, host, s["id"], str(ws))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "launching" and body["runner_id"].startswith("runner_")
        runner = _runner(world, body["runner_id"])
        assert runner["session_id"] == s["id"] and runner["host_id"] == host
        assert runner["status"] == "running"
        # the runner's process runs on that node (it inherited the node's HOME) in the workspace
        assert pid_alive(runner["pid"])
        assert os.readlink(f"/proc/{runner['pid']}/cwd") == str(ws)
        assert proc_env(runner["pid"])["HOME"] == node.home
        session = world.alice.get(f"/v1/sessions/{s['id']}").json()
        assert session["runner_id"] == body["runner_id"] and session["status"] == "running"
        assert session["host_id"] == host and session["workspace"] == str(ws)
        host_obj = world.alice.get(f"/v1/hosts/{host}").json()
        assert host_obj["runner_count"] >= 1
        # deleting the session stops the runner
        assert world.alice.delete(f"/v1/sessions/{s['id']}").json()["deleted"] is True
        deadline = time.monotonic() + 10
        while pid_alive(runner["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(runner["pid"])
        assert _runner(world, body["runner_id"])["status"] == "runner_exited"
        assert world.alice.get(f"/v1/sessions/{s['id']}").status_code == 404


def test_second_launch_is_400_and_concurrent_launches_give_one_winner(world):
    ws = Path(world.node_a.home)
    s = new_session(world.alice)
    assert launch(world.alice, world.host_a, s["id"], str(ws)).status_code == 200
    r = launch(world.alice, world.host_a, s["id"], str(ws))
    assert r.status_code == 400 and r.json()["error"]["code"] == "runner_already_bound"

    s2 = new_session(world.alice)
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda _: launch(world.alice, world.host_a, s2["id"], str(ws)), range(2))
        )
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 400], [r.text for r in results]
    winner = next(r for r in results if r.status_code == 200).json()["runner_id"]
    assert world.alice.get(f"/v1/sessions/{s2['id']}").json()["runner_id"] == winner


def test_launch_errors(world):
    ws = world.node_a.home
    s = new_session(world.alice)
    r = launch(world.alice, "host_nope", s["id"], ws)
    assert r.status_code == 404
    r = launch(world.alice, world.host_a, "conv_nope", ws)
    assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found"
    bobs = new_session(world.bob)
    r = launch(world.alice, world.host_a, bobs["id"], ws)
    assert r.status_code == 404  # another user's session is invisible
    r = launch(world.alice, world.host_bob, s["id"], ws)
    assert r.status_code == 403
    for bad in (ws + "/does-not-exist", "relative/dir", ws + "/x\x00y"):
        r = launch(world.alice, world.host_a, s["id"], bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_workspace", bad
    r = world.alice.post(f"/v1/hosts/{world.host_a}/runners", json={"workspace": ws})
    assert r.status_code == 422
    # none of the failures left the session bound
    assert world.alice.get(f"/v1/sessions/{s['id']}").json()["status"] == "idle"
    assert launch(world.alice, world.host_a, s["id"], ws).status_code == 200


def _repo(root: Path) -> Path:
    repo = root / "repo"
    if not repo.exists():
        repo.mkdir(parents=True)
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }
        for cmd in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "c"]):
            subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env)
    return repo


def _branches(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "branch", "--format=%(refname:short)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_git_worktree_on_new_branch(world):
    repo = _repo(Path(world.node_b.home))
    s = new_session(world.alice)
    r = launch(world.alice, world.host_b, s["id"], str(repo), git={"branch_name": "feat/one"})
    assert r.status_code == 200, r.text
    tree = repo.parent / "repo-worktrees" / "feat" / "one"
    assert tree.is_dir() and "feat/one" in _branches(repo)
    session = world.alice.get(f"/v1/sessions/{s['id']}").json()
    assert session["workspace"] == str(tree) and session["git_branch"] == "feat/one"
    runner = _runner(world, r.json()["runner_id"])
    assert os.readlink(f"/proc/{runner['pid']}/cwd") == str(tree)
    # the branch exists now: a second session asking for it gets 400
    s2 = new_session(world.alice)
    r = launch(world.alice, world.host_b, s2["id"], str(repo), git={"branch_name": "feat/one"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_branch"
    r = launch(
        world.alice,
        world.host_b,
        s2["id"],
        str(repo),
        git={"branch_name": "feat/two", "base_branch": "nope"},
    )
    assert r.status_code == 400 and "feat/two" not in _branches(repo)
    # binding an existing worktree as it is
    r = launch(
        world.alice,
        world.host_b,
        s2["id"],
        str(tree),
        git={"branch_name": "feat/one", "existing_worktree": True},
    )
    assert r.status_code == 200, r.text
    assert world.alice.get(f"/v1/sessions/{s2['id']}").json()["git_branch"] == "feat/one"


@pytest.mark.parametrize("name", ["bad name", "a..b", "-x", "x.lock", "a/", "~x", "a:b", ""])
def test_bad_branch_names_are_400(world, name):
    s = new_session(world.alice)
    r = launch(world.alice, world.host_b, s["id"], world.node_b.home, git={"branch_name": name})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_branch"


def test_failed_launch_rolls_the_worktree_back(world, tmp_path):
    """A host whose runners cannot start: the new worktree and branch are removed again."""
    home = str(tmp_path)
    node = RayNode(
        world.server, "127.0.0.16", home, env={"OMNIGENT_FAULT_RUNNER_START": "1"}
    ).wait_started()
    try:
        host = node.wait_host(world.alice)
        repo = _repo(Path(home))
        s = new_session(world.alice)
        r = launch(world.alice, host, s["id"], str(repo), git={"branch_name": "doomed"})
        assert r.status_code == 502 and r.json()["error"]["code"] == "launch_failed"
        assert "doomed" not in _branches(repo)
        assert not (repo.parent / "repo-worktrees").exists()
        session = world.alice.get(f"/v1/sessions/{s['id']}").json()
        assert session["status"] == "idle" and session["runner_id"] is None
    finally:
        node.kill()


def test_create_session_with_host_launches_at_once(world):
    s = new_session(world.alice, host_id=world.host_a, workspace=world.node_a.home)
    assert s["status"] == "running" and s["runner_id"] and s["host_id"] == world.host_a
    r = world.alice.post(
        "/v1/sessions",
        json={"agent": {"name": "x"}, "host_id": world.host_a, "workspace": "/nope/nope"},
    )
    assert r.status_code == 400
    r = world.alice.post("/v1/sessions", json={"agent": {"name": "x"}, "host_id": world.host_a})
    assert r.status_code == 400 and r.json()["error"]["code"] == "workspace_required"
