"""The Hosts API through HTTP: list, get, ownership, and browsing each host's own files."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.cluster.helpers import proc_env, raw_get


def test_list_shows_own_hosts_with_reference_fields(world):
    hosts = world.alice.get("/v1/hosts").json()["hosts"]
    ours = {world.host_local, world.host_a, world.host_b}
    assert ours <= {h["id"] for h in hosts} and world.host_bob not in {h["id"] for h in hosts}
    for h in hosts:
        if h["id"] in ours:  # other tests add hosts of their own, offline by now
            assert h["status"] == "online"
        assert h["platform"] == "linux" and h["owner"]
        assert isinstance(h["registered_at"], int) and isinstance(h["runner_count"], int)
        assert h["id"].startswith("host_") and h["name"]
    bob = world.bob.get("/v1/hosts").json()["hosts"]
    assert [h["id"] for h in bob] == [world.host_bob]


def test_get_host_own_other_unknown(world):
    r = world.alice.get(f"/v1/hosts/{world.host_a}")
    assert r.status_code == 200 and r.json()["id"] == world.host_a
    r = world.alice.get(f"/v1/hosts/{world.host_bob}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = world.alice.get("/v1/hosts/host_nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "host_not_found"


def test_root_lists_each_hosts_own_home(world):
    Path(world.node_a.home, "only-on-a").mkdir(exist_ok=True)
    Path(world.node_b.home, "only-on-b.txt").write_text("b")
    a = world.alice.get(f"/v1/hosts/{world.host_a}/filesystem", params={"limit": 1000}).json()
    b = world.alice.get(f"/v1/hosts/{world.host_b}/filesystem", params={"limit": 1000}).json()
    names_a = {e["name"] for e in a["data"]}
    names_b = {e["name"] for e in b["data"]}
    assert "only-on-a" in names_a and "only-on-a" not in names_b
    assert "only-on-b.txt" in names_b and "only-on-b.txt" not in names_a
    entry = next(e for e in a["data"] if e["name"] == "only-on-a")
    assert entry == {
        **entry,
        "path": os.path.join(world.node_a.home, "only-on-a"),
        "type": "directory",
    }
    assert a["object"] == "list" and a["has_more"] is False


def test_tilde_paths_expand_on_the_host(world):
    Path(world.node_b.home, "proj", "src").mkdir(parents=True, exist_ok=True)
    r = world.alice.get(f"/v1/hosts/{world.host_b}/filesystem/~/proj")
    assert r.status_code == 200, r.text
    assert [e["path"] for e in r.json()["data"]] == [os.path.join(world.node_b.home, "proj", "src")]


@pytest.fixture
def tree(world, tmp_path_factory):
    root = Path(world.node_a.home) / "tree"
    root.mkdir(exist_ok=True)
    for i in range(25):
        (root / f"f{i:02d}.txt").write_text("x" * i)
    (root / ".hidden").write_text("h")
    (root / "sub").mkdir(exist_ok=True)
    if not (root / "linkdir").exists():
        (root / "linkdir").symlink_to(root / "sub")
    if not (root / "dangling").is_symlink():
        (root / "dangling").symlink_to(root / "missing")
    return root


def _browse(world, path, **params):
    return world.alice.get(
        f"/v1/hosts/{world.host_a}/filesystem/{str(path).lstrip('/')}", params=params
    )


def test_entries_hidden_symlinks_sorted(world, tree):
    body = _browse(world, tree, limit=1000).json()
    names = [e["name"] for e in body["data"]]
    assert names == sorted(names)
    assert ".hidden" in names and "dangling" not in names
    by_name = {e["name"]: e for e in body["data"]}
    assert by_name["linkdir"]["type"] == "directory"
    assert by_name["f03.txt"]["bytes"] == 3 and by_name["f03.txt"]["type"] == "file"
    assert isinstance(by_name["f03.txt"]["modified_at"], int)


def test_pagination_keyset(world, tree):
    all_paths = [e["path"] for e in _browse(world, tree, limit=1000).json()["data"]]
    first = _browse(world, tree, limit=10).json()
    assert [e["path"] for e in first["data"]] == all_paths[:10] and first["has_more"]
    second = _browse(world, tree, limit=10, after=first["data"][-1]["path"]).json()
    assert [e["path"] for e in second["data"]] == all_paths[10:20]
    back = _browse(world, tree, limit=5, before=second["data"][0]["path"]).json()
    assert [e["path"] for e in back["data"]] == all_paths[5:10] and back["has_more"]
    # a cursor whose entry was deleted still works
    gone = tree / "f05.txt"
    gone.unlink()
    try:
        after_gone = _browse(world, tree, limit=3, after=str(gone)).json()
        assert [e["name"] for e in after_gone["data"]] == ["f06.txt", "f07.txt", "f08.txt"]
    finally:
        gone.write_text("x" * 5)
    last = _browse(world, tree, limit=1000, after=all_paths[-2]).json()
    assert [e["path"] for e in last["data"]] == all_paths[-1:] and not last["has_more"]


@pytest.mark.parametrize("limit", [0, 1001, -1])
def test_limit_out_of_range_is_422(world, tree, limit):
    r = _browse(world, tree, limit=limit)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_bad_paths(world, tree):
    hid = world.host_a
    r = world.alice.get(f"/v1/hosts/{hid}/filesystem/tmp%00x")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_path"
    for raw in ("sub/../../..", "%2E%2E/x", "..%2Fx", "sub/.."):
        status, body = raw_get(
            world.server.url, world.server.token, f"/v1/hosts/{hid}/filesystem{tree}/{raw}"
        )
        assert (status, body["error"]["code"]) == (400, "invalid_path"), raw
    r = _browse(world, tree / "missing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = _browse(world, tree / "f01.txt")
    assert r.status_code == 404


def test_unreadable_directory_is_502(world, tmp_path):
    target = Path("/proc/1/map_files")
    try:
        os.listdir(target)
        readable = True
    except PermissionError:
        readable = False
    if readable:  # not root-without-CAP_SYS_ADMIN: a plain mode-000 dir is unreadable
        target = Path(world.node_a.home) / "locked"
        target.mkdir(exist_ok=True)
        target.chmod(0)
        try:
            os.listdir(target)
            pytest.skip("this user can read anything: no unreadable directory to test with")
        except PermissionError:
            pass
    r = _browse(world, target)
    assert r.status_code == 502 and r.json()["error"]["code"] == "host_io_error"


def test_browse_others_host_403_unknown_404(world):
    r = world.alice.get(f"/v1/hosts/{world.host_bob}/filesystem")
    assert r.status_code == 403
    r = world.alice.get("/v1/hosts/host_nope/filesystem/tmp")
    assert r.status_code == 404


def _host_actor_pids(home: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            if cmd.startswith(b"ray::HostActor") and proc_env(int(entry)).get("HOME") == home:
                pids.append(int(entry))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return pids


def test_host_that_does_not_answer_is_504(world):
    """A frozen host process (SIGSTOP) answers nothing: 504 after the 5 s deadline."""
    assert world.alice.get(f"/v1/hosts/{world.host_b}/filesystem").status_code == 200
    pids = _host_actor_pids(world.node_b.home)
    assert pids, "no HostActor process found for node B"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = world.alice.get(f"/v1/hosts/{world.host_b}/filesystem")
        took = time.monotonic() - t0
        assert r.status_code == 504 and r.json()["error"]["code"] == "host_timeout"
        assert 4.5 < took < 15
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert world.alice.get(f"/v1/hosts/{world.host_b}/filesystem").status_code == 200


def test_too_long_paths_and_symlink_loops_are_400(world, tmp_path):
    hid = world.host_a
    for raw in ("a/" * 3000, "tmp/" + "x" * 256):
        r = world.alice.get(f"/v1/hosts/{hid}/filesystem/{raw}")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_path", r.text
        assert "too long" in r.json()["error"]["message"]
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    r = world.alice.get(f"/v1/hosts/{hid}/filesystem{loop}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_path", r.text
