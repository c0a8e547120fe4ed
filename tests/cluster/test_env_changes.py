"""Changes since the session started, whoever made them, and per-file diffs.

Each test launches its own session: the baseline is the workspace as it was then. No
sleeps between a change and the question: a change made before the request (an API
write, a shell command that returned, a file written by this test directly on disk) must
be in the answer.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from tests.cluster.helpers import (
    env_url,
    error_code,
    git,
    launched,
    make_workspace,
    put_files,
    raw_request,
)


def _changes(client, sid: str) -> dict[str, str]:
    r = client.get(env_url(sid, "/changes"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["has_more"] is False
    paths = [c["path"] for c in body["data"]]
    assert len(paths) == len(set(paths)), f"a path listed twice: {paths}"
    return {c["path"]: c["status"] for c in body["data"]}


def _shell(client, sid: str, command: str) -> dict:
    r = client.post(env_url(sid, "/shell"), json={"command": command, "timeout": 60})
    assert r.status_code == 200, r.text
    assert r.json()["exit_code"] == 0, r.json()
    return r.json()


@pytest.fixture
def session(world):
    """(sid, workspace) factory; sessions are deleted afterwards."""
    made = []

    def make(files: dict | None = None, ws: str | None = None, **launch_extra):
        ws = ws or make_workspace(world.node_a.home, files or {})
        sid = launched(world.alice, world.host_a, ws, **launch_extra)
        made.append(sid)
        return sid, ws

    yield make
    for sid in made:
        world.alice.delete(f"/v1/sessions/{sid}")


def _repo(world, files: dict) -> str:
    repo = make_workspace(world.node_a.home, files, prefix="repo-")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "start")
    return repo


def test_changes_from_every_writer_in_a_plain_directory(world, session):
    c = world.alice
    sid, ws = session(
        {
            "keep.txt": "keep",
            "api_mod.txt": "old",
            "sh_mod.txt": "old",
            "disk_mod.txt": "old",
            "api_del.txt": "x",
            "sh_del.txt": "x",
            "disk_del.txt": "x",
            "revert.txt": "original",
            "sub/deep.txt": "deep",
        }
    )
    assert _changes(c, sid) == {}

    # the API
    assert c.put(env_url(sid, "/filesystem/api_new.txt"), json={"content": "n"}).status_code == 200
    r = c.put(env_url(sid, "/filesystem/api_mod.txt"), json={"content": "new"})
    assert r.status_code == 200
    assert c.delete(env_url(sid, "/filesystem/api_del.txt")).status_code == 200
    assert c.put(env_url(sid, "/filesystem/api_tmp.txt"), json={"content": "t"}).status_code == 200
    assert c.delete(env_url(sid, "/filesystem/api_tmp.txt")).status_code == 200
    # a shell command
    _shell(
        c,
        sid,
        "echo n > sh_new.txt; echo more >> sh_mod.txt; rm sh_del.txt;"
        " touch sh_tmp; rm sh_tmp; mkdir -p a/b/c && touch a/b/c/f",
    )
    # an editor outside the system: this test, directly on disk
    put_files(
        ws,
        {
            "disk_new.txt": "n",
            "disk_mod.txt": "new!",
            "sub/deep.txt": "deeper",
            "disk_tmp.txt": "t",
            "revert.txt": "changed",
        },
    )
    os.unlink(os.path.join(ws, "disk_del.txt"))
    os.unlink(os.path.join(ws, "disk_tmp.txt"))

    expected = {
        "api_new.txt": "created",
        "api_mod.txt": "modified",
        "api_del.txt": "deleted",
        "sh_new.txt": "created",
        "sh_mod.txt": "modified",
        "sh_del.txt": "deleted",
        "a/b/c/f": "created",
        "disk_new.txt": "created",
        "disk_mod.txt": "modified",
        "disk_del.txt": "deleted",
        "sub/deep.txt": "modified",
        "revert.txt": "modified",
    }
    assert _changes(c, sid) == expected

    # modified back to its original bytes: no longer listed (other mtime, same bytes)
    put_files(ws, {"revert.txt": "original"})
    _shell(c, sid, "printf old > sh_mod.txt")  # back to the start too
    expected.pop("revert.txt")
    expected.pop("sh_mod.txt")
    assert _changes(c, sid) == expected

    # touched (new mtime, same bytes) and chmod-ed files are not changed files
    os.utime(os.path.join(ws, "keep.txt"), (1, 1))
    _shell(c, sid, "touch keep.txt; chmod 600 keep.txt")
    assert _changes(c, sid) == expected

    # the entries' fields
    body = c.get(env_url(sid, "/changes")).json()
    by_path = {e["path"]: e for e in body["data"]}
    new = by_path["disk_mod.txt"]
    assert new["name"] == "disk_mod.txt" and new["bytes"] == 4
    assert new["modified_at"] == int(os.stat(os.path.join(ws, "disk_mod.txt")).st_mtime)
    assert by_path["a/b/c/f"]["name"] == "f" and by_path["a/b/c/f"]["bytes"] == 0
    assert by_path["api_del.txt"]["status"] == "deleted"


def test_changes_in_a_git_repository_include_ignored_files(world, session):
    c = world.alice
    repo = _repo(
        world,
        {
            ".gitignore": "*.log\nbuild/\n",
            "src/app.py": "print(1)\n",
            "old.log": "old log\n",
            "README": "r\n",
        },
    )
    sid, _ = session(ws=repo)
    _shell(
        c,
        sid,
        "echo hi > x.log; echo 'print(2)' > src/app.py; mkdir build; "
        "echo o > build/out.o; echo more >> old.log; git add -A; "
        "git -c user.name=t -c user.email=t@t commit -q -m two",
    )
    put_files(repo, {"notes.txt": "n"})
    assert _changes(c, sid) == {
        "x.log": "created",
        "build/out.o": "created",
        "old.log": "modified",
        "src/app.py": "modified",
        "notes.txt": "created",
    }  # and nothing of .git: its files are git's own bookkeeping


def test_changes_after_git_checkout_of_another_branch(world, session):
    c = world.alice
    repo = _repo(
        world,
        {
            "common.txt": "same\n",
            "changed.txt": "main version\n",
            "only_main.txt": "m\n",
            "dir/main_only.txt": "dm\n",
        },
    )
    git(repo, "checkout", "-q", "-b", "other")
    put_files(
        repo,
        {"changed.txt": "other version\n", "only_other.txt": "o\n", "newdir/deep/o.txt": "deep\n"},
    )
    os.unlink(os.path.join(repo, "only_main.txt"))
    os.unlink(os.path.join(repo, "dir/main_only.txt"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "other")
    git(repo, "checkout", "-q", "main")
    assert Path(repo, "changed.txt").read_text() == "main version\n"

    sid, _ = session(ws=repo)
    _shell(c, sid, "git checkout -q other")
    assert Path(repo, "changed.txt").read_text() == "other version\n"
    assert _changes(c, sid) == {
        "changed.txt": "modified",
        "only_other.txt": "created",
        "newdir/deep/o.txt": "created",
        "only_main.txt": "deleted",
        "dir/main_only.txt": "deleted",
    }
    # back to main: everything is as it was at the start again
    _shell(c, sid, "git checkout -q main")
    assert _changes(c, sid) == {}


def test_a_thousand_files_from_one_command(world, session):
    c = world.alice
    sid, ws = session({"seed.txt": "s"})
    _shell(c, sid, "mkdir many && for i in $(seq 1 1000); do echo $i > many/f$i.txt; done")
    changes = _changes(c, sid)  # right away: no sleep
    assert len(changes) == 1000, sorted(
        set(f"many/f{i}.txt" for i in range(1, 1001)) - set(changes)
    )[:10]
    assert changes == {f"many/f{i}.txt": "created" for i in range(1, 1001)}
    # and 1000 more straight into the (watched) root, plus deep new trees
    _shell(
        c,
        sid,
        "for i in $(seq 1 1000); do echo $i > r$i; done; "
        "for i in $(seq 1 50); do mkdir -p t$i/x/y && echo $i > t$i/x/y/z; done",
    )
    changes = _changes(c, sid)
    assert len(changes) == 2050
    assert all(changes[f"r{i}"] == "created" for i in range(1, 1001))
    assert all(changes[f"t{i}/x/y/z"] == "created" for i in range(1, 51))
    _shell(c, sid, "rm -r many r*")
    assert _changes(c, sid) == {f"t{i}/x/y/z": "created" for i in range(1, 51)}


def test_moves_and_directory_removal(world, session):
    c = world.alice
    sid, ws = session({"d/a.txt": "a", "d/e/b.txt": "b", "m.txt": "m"})
    _shell(c, sid, "mv d d2; mv m.txt n.txt")
    assert _changes(c, sid) == {
        "d/a.txt": "deleted",
        "d/e/b.txt": "deleted",
        "m.txt": "deleted",
        "d2/a.txt": "created",
        "d2/e/b.txt": "created",
        "n.txt": "created",
    }
    _shell(c, sid, "mv d2 d; mv n.txt m.txt")
    assert _changes(c, sid) == {}
    # a removed tree; a file replaced by a directory
    _shell(c, sid, "rm -rf d; rm m.txt; mkdir m.txt; echo x > m.txt/inner")
    assert _changes(c, sid) == {
        "d/a.txt": "deleted",
        "d/e/b.txt": "deleted",
        "m.txt": "deleted",
        "m.txt/inner": "created",
    }


def test_trees_moved_in_and_out_of_the_workspace(world, session):
    c = world.alice
    sid, ws = session({"stay.txt": "s", "leaving/a.txt": "a", "leaving/b/c.txt": "c"})
    outside = make_workspace(
        world.node_a.home,
        {"arriving/x.txt": "x", "arriving/y/z.txt": "z", "single.txt": "1"},
        prefix="elsewhere-",
    )
    _shell(
        c,
        sid,
        f"mv leaving {outside}/gone; mv {outside}/arriving ./arrived;"
        f" mv {outside}/single.txt ./single.txt",
    )
    assert _changes(c, sid) == {
        "leaving/a.txt": "deleted",
        "leaving/b/c.txt": "deleted",
        "arrived/x.txt": "created",
        "arrived/y/z.txt": "created",
        "single.txt": "created",
    }
    # a tree moved in from outside is watched from then on
    put_files(ws, {"arrived/y/new.txt": "n"})
    assert _changes(c, sid)["arrived/y/new.txt"] == "created"


def test_dependency_and_tool_directories_are_not_tracked(world, session):
    """The issue bounds the tracker's cost with ignore rules for huge dependency trees
    (README, Environments): node_modules, __pycache__ and the like are neither watched
    nor listed, while the project files beside them are."""
    c = world.alice
    sid, ws = session({"package.json": "{}", "node_modules/left-pad/index.js": "old"})
    _shell(
        c,
        sid,
        "echo new > node_modules/left-pad/index.js; mkdir -p node_modules/x;"
        " echo y > node_modules/x/y.js; mkdir __pycache__; echo c > __pycache__/m.pyc;"
        " echo '{\"a\": 1}' > package.json",
    )
    assert _changes(c, sid) == {"package.json": "modified"}


# diff -------------------------------------------------------------------------------------

BIN_BEFORE = b"\x00\x01binary\xff" * 10
BIN_AFTER = b"\x00\x02BINARY\xfe" * 12


@pytest.fixture(scope="module")
def diffs(world):
    ws = make_workspace(
        world.node_a.home,
        {
            "mod.txt": "line one\nline two\n",
            "gone.txt": "bye\n",
            "same.txt": "same\n",
            "img.bin": BIN_BEFORE,
            "back.txt": "b\n",
            "héllo.txt": "ä\n",
        },
    )
    sid = launched(world.alice, world.host_a, ws)
    # A command through the runner waits until the baseline has the files' bytes (taken
    # in the background after the launch): only then do edits made behind the runner's
    # back have a `before` (an edit before that is listed with `before: null`, by design)
    _shell(world.alice, sid, "true")
    put_files(
        ws,
        {
            "mod.txt": "line one\nline 2\n",
            "new.txt": "fresh\n",
            "img.bin": BIN_AFTER,
            "back.txt": "x\n",
            "héllo.txt": "ö\n",
        },
    )
    os.unlink(os.path.join(ws, "gone.txt"))
    put_files(ws, {"back.txt": "b\n"})
    yield sid, ws
    world.alice.delete(f"/v1/sessions/{sid}")


def _diff(client, sid, rel):
    return client.get(env_url(sid, f"/diff/{rel}"))


def test_diff_modified_created_deleted(world, diffs):
    c, (sid, _) = world.alice, diffs
    r = _diff(c, sid, "mod.txt")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == "mod.txt" and body["status"] == "modified"
    assert body["before"] == "line one\nline two\n" and body["after"] == "line one\nline 2\n"
    assert body["encoding"] == "utf-8" and body["truncated"] is False
    assert body["object"] == "session.environment.filesystem.file_diff"
    body = _diff(c, sid, "new.txt").json()
    assert body["status"] == "created" and body["before"] is None and body["after"] == "fresh\n"
    body = _diff(c, sid, "gone.txt").json()
    assert body["status"] == "deleted" and body["before"] == "bye\n" and body["after"] is None
    body = _diff(c, sid, "h%C3%A9llo.txt").json()
    assert body["before"] == "ä\n" and body["after"] == "ö\n"


def test_diff_binary_is_base64(world, diffs):
    c, (sid, _) = world.alice, diffs
    body = _diff(c, sid, "img.bin").json()
    assert body["encoding"] == "base64", body
    assert base64.b64decode(body["before"]) == BIN_BEFORE
    assert base64.b64decode(body["after"]) == BIN_AFTER


def test_diff_of_unchanged_is_404_and_escapes_are_400(world, diffs):
    c, (sid, _) = world.alice, diffs
    for rel in ("same.txt", "back.txt", "never-existed.txt", "dir/none"):
        r = _diff(c, sid, rel)
        assert r.status_code == 404 and error_code(r), (rel, r.text)
    for raw in ("..", "../etc/passwd", "%2E%2E%2Fetc%2Fpasswd", "/etc/passwd", "a%00b"):
        status, body = raw_request(
            world.server.url, world.server.token, "GET", env_url(sid, "/diff/" + raw)
        )
        assert status == 400 and body["error"]["code"] == "invalid_path", (raw, body)
