"""Environment resources: listing and getting them, and who may reach them when.

A session's resources are served by its runner: no runner → 409 `runner_not_bound`, a
runner on a dead machine → 503 `runner_unavailable` (quickly, never a hang), a deleted
or foreign session → 404, no token → 401.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.cluster.helpers import (
    env_url,
    error_code,
    git,
    launched,
    make_workspace,
    new_session,
    put_files,
)
from tests.procs import RayNode


def _routes(sid: str) -> list[tuple[str, str, dict | None]]:
    """(method, path, json body) of every environment route of session `sid`."""
    res = f"/v1/sessions/{sid}/resources"
    return [
        ("GET", res, None),
        ("GET", res + "/default", None),
        ("GET", res + "/environments", None),
        ("GET", env_url(sid), None),
        ("GET", env_url(sid, "/filesystem"), None),
        ("GET", env_url(sid, "/filesystem/a.txt"), None),
        ("PUT", env_url(sid, "/filesystem/new.txt"), {"content": "x"}),
        ("PATCH", env_url(sid, "/filesystem/a.txt"), {"old_text": "a", "new_text": "b"}),
        ("DELETE", env_url(sid, "/filesystem/a.txt"), None),
        ("GET", env_url(sid, "/changes"), None),
        ("GET", env_url(sid, "/diff/a.txt"), None),
        ("GET", env_url(sid, "/search?q=a"), None),
        ("GET", env_url(sid, "/search/sub?q=a"), None),
        ("POST", env_url(sid, "/shell"), {"command": "touch shell-ran"}),
    ]


def _call(client: httpx.Client, method: str, path: str, body: dict | None) -> httpx.Response:
    return client.request(method, path, json=body)


def test_list_and_get_environment_resources(world):
    ws = make_workspace(world.node_a.home, {"a.txt": "a"})
    sid = launched(world.alice, world.host_a, ws)
    try:
        res = f"/v1/sessions/{sid}/resources"
        r = world.alice.get(res)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "list" and body["has_more"] is False
        envs = [d for d in body["data"] if d["type"] == "environment"]
        assert len(envs) == 1
        env = envs[0]
        assert env["id"] == "default" and env["object"] == "session.resource"
        assert env["session_id"] == sid and env["name"] == "default"
        assert env["metadata"]["root"] == ws
        assert body["first_id"] == body["data"][0]["id"]
        assert body["last_id"] == body["data"][-1]["id"]

        r = world.alice.get(res, params={"type": "environment"})
        assert r.status_code == 200 and r.json()["data"] == [env]
        r = world.alice.get(res, params={"type": "terminal"})
        assert r.status_code == 200 and r.json()["data"] == [], r.text
        r = world.alice.get(res, params={"type": "nonsense"})
        assert r.status_code == 422 and error_code(r), r.text
        assert r.json()["error"]["message"]

        r = world.alice.get(res + "/default")
        assert r.status_code == 200 and r.json() == env
        r = world.alice.get(res + "/environments")
        assert r.status_code == 200
        assert r.json()["object"] == "list" and r.json()["data"] == [env]
        r = world.alice.get(env_url(sid))
        assert r.status_code == 200 and r.json() == env

        # unknown ids
        r = world.alice.get(res + "/environments/nope")
        assert r.status_code == 404 and error_code(r) == "environment_not_found"
        for rest in ("/filesystem", "/filesystem/a.txt", "/changes", "/search?q=a"):
            r = world.alice.get(f"{res}/environments/nope{rest}")
            assert r.status_code == 404, (rest, r.text)
        r = world.alice.post(f"{res}/environments/nope/shell", json={"command": "touch x"})
        assert r.status_code == 404 and not os.path.exists(os.path.join(ws, "x"))
        r = world.alice.get(res + "/resource_nope")
        assert r.status_code == 404 and error_code(r)
    finally:
        world.alice.delete(f"/v1/sessions/{sid}")


def test_environment_root_is_the_git_worktree(world):
    home = make_workspace(world.node_a.home, prefix="gitws-")
    repo = os.path.join(home, "repo")
    put_files(repo, {"README.md": "hello\n"})
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "c")
    sid = launched(world.alice, world.host_a, repo, git={"branch_name": "env-tree"})
    try:
        tree = os.path.join(home, "repo-worktrees", "env-tree")
        assert os.path.isdir(tree)
        r = world.alice.get(env_url(sid))
        assert r.status_code == 200 and r.json()["metadata"]["root"] == tree, r.text
        # the environment really is the worktree: files go there, not to the repository
        r = world.alice.put(env_url(sid, "/filesystem/on-branch.txt"), json={"content": "b"})
        assert r.status_code == 200, r.text
        assert Path(tree, "on-branch.txt").read_text() == "b"
        assert not Path(repo, "on-branch.txt").exists()
        r = world.alice.post(env_url(sid, "/shell"), json={"command": "git branch --show-current"})
        assert r.json()["stdout"].strip() == "env-tree"
        r = world.alice.get(env_url(sid, "/filesystem/README.md"))
        assert r.status_code == 200 and r.json()["content"] == "hello\n"
    finally:
        world.alice.delete(f"/v1/sessions/{sid}")


def test_no_runner_bound_is_409_on_every_route(world):
    s = new_session(world.alice)
    for method, path, body in _routes(s["id"]):
        r = _call(world.alice, method, path, body)
        assert r.status_code == 409, (method, path, r.status_code, r.text)
        assert error_code(r) == "runner_not_bound", (method, path, r.text)
    world.alice.delete(f"/v1/sessions/{s['id']}")


def test_deleted_session_is_404_on_every_route(world):
    ws = make_workspace(world.node_a.home, {"a.txt": "a"})
    sid = launched(world.alice, world.host_a, ws)
    # the runner answered before: a link to it is known to the API
    assert world.alice.get(env_url(sid, "/filesystem/a.txt")).status_code == 200
    assert world.alice.delete(f"/v1/sessions/{sid}").status_code == 200
    for method, path, body in _routes(sid):
        r = _call(world.alice, method, path, body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert error_code(r), r.text
    # nothing reached the files
    assert sorted(os.listdir(ws)) == ["a.txt"]
    assert Path(ws, "a.txt").read_text() == "a"


def test_another_users_session_is_404_and_no_token_is_401(world):
    ws = make_workspace(world.node_a.home, {"a.txt": "a"})
    sid = launched(world.alice, world.host_a, ws)
    try:
        assert world.alice.get(env_url(sid, "/filesystem/a.txt")).status_code == 200
        for method, path, body in _routes(sid):
            r = _call(world.bob, method, path, body)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert error_code(r), r.text
            r = _call(world.anon, method, path, body)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert error_code(r), r.text
        bad = httpx.Client(
            base_url=world.server.url,
            timeout=30,
            headers={"Authorization": "Bearer omg_not_a_token"},
        )
        with bad:
            r = bad.get(env_url(sid, "/filesystem/a.txt"))
            assert r.status_code == 401 and error_code(r), r.text
        # none of them touched the workspace
        assert sorted(os.listdir(ws)) == ["a.txt"]
        assert Path(ws, "a.txt").read_text() == "a"
        assert world.alice.get(env_url(sid, "/filesystem/a.txt")).status_code == 200
    finally:
        world.alice.delete(f"/v1/sessions/{sid}")


def test_each_user_reaches_only_their_own_environment(world):
    ws_a = make_workspace(world.node_a.home, {"a.txt": "alice"})
    ws_b = make_workspace(world.node_bob.home, {"b.txt": "bob"})
    sid_a = launched(world.alice, world.host_a, ws_a)
    sid_b = launched(world.bob, world.host_bob, ws_b)
    try:
        r = world.bob.get(env_url(sid_b, "/filesystem/b.txt"))
        assert r.status_code == 200 and r.json()["content"] == "bob", r.text
        r = world.alice.get(env_url(sid_a, "/filesystem/a.txt"))
        assert r.status_code == 200 and r.json()["content"] == "alice", r.text
        for client, sid in ((world.alice, sid_b), (world.bob, sid_a)):
            r = client.get(env_url(sid, "/filesystem"))
            assert r.status_code == 404, r.text
            r = client.post(env_url(sid, "/shell"), json={"command": "touch owned"})
            assert r.status_code == 404, r.text
        assert not os.path.exists(os.path.join(ws_a, "owned"))
        assert not os.path.exists(os.path.join(ws_b, "owned"))
    finally:
        world.alice.delete(f"/v1/sessions/{sid_a}")
        world.bob.delete(f"/v1/sessions/{sid_b}")


def test_runner_on_a_dead_machine_is_503_quickly(world, tmp_path):
    home = str(tmp_path)
    os.chmod(home, 0o755)
    node = RayNode(world.server, "127.0.0.15", home).wait_started()
    sid = None
    try:
        host = node.wait_host(world.alice)
        ws = make_workspace(home, {"a.txt": "a"})
        sid = launched(world.alice, host, ws)
        r = world.alice.get(env_url(sid, "/filesystem/a.txt"))
        assert r.status_code == 200, r.text

        node.kill()  # the machine goes away: raylet, workers, the runner
        killed = time.monotonic()
        slowest = 0.0
        last = None
        while time.monotonic() - killed < 20:
            t0 = time.monotonic()
            last = world.alice.get(env_url(sid, "/filesystem/a.txt"))
            slowest = max(slowest, time.monotonic() - t0)
            if last.status_code == 503:
                break
            time.sleep(0.2)
        took = time.monotonic() - killed
        assert last is not None and last.status_code == 503, last.text
        assert error_code(last) == "runner_unavailable", last.text
        assert took < 15, f"503 only {took:.1f}s after the kill"
        assert slowest < 10, f"a request took {slowest:.1f}s"
        # it stays 503 on every route, each answered promptly
        for method, path, body in _routes(sid):
            t0 = time.monotonic()
            r = _call(world.alice, method, path, body)
            assert time.monotonic() - t0 < 10, (method, path)
            assert r.status_code == 503, (method, path, r.status_code, r.text)
            assert error_code(r) == "runner_unavailable", (method, path, r.text)
    finally:
        if sid:
            world.alice.delete(f"/v1/sessions/{sid}")
        node.kill()


@pytest.mark.parametrize("client_name", ["bob", "anon"])
def test_foreign_session_without_runner_is_not_409(world, client_name):
    """A session without a runner stays unreachable to others too (404/401, never 409)."""
    s = new_session(world.alice)
    client = getattr(world, client_name)
    r = client.get(env_url(s["id"], "/filesystem"))
    assert r.status_code == (404 if client_name == "bob" else 401), r.text
    world.alice.delete(f"/v1/sessions/{s['id']}")
