"""A session's baseline outlives its tracker (omnigent.env.baseline, issue 12).

Tracker A takes the baseline of a workspace for a session, files change, A closes (its
runner stopped or died); files change while no tracker runs; tracker B for the same
session and workspace must report the same `changes` and `diff` as if A had run all
along. Real files, real inotify, no mocks; the "killed mid-baseline" case kills a real
process with SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from omnigent.env import changes as changes_mod
from omnigent.env.baseline import (
    MANIFEST,
    PACK,
    BaselineStore,
    remove_session_baseline,
    session_baseline_dir,
    stored_sessions,
)
from omnigent.env.changes import ChangeTracker
from tests.unit.files import put

OLD = 1_500_000_000


@pytest.fixture
def store_dir(tmp_path):
    return str(tmp_path / "baselines" / "ns" / "conv_0123456789abcdef")


@pytest.fixture
def tracker(tmp_path, store_dir):
    """tracker(root, **kw) -> a started ChangeTracker keeping its baseline in `store_dir`
    (its own state directory each time, as each runner has); all are closed."""
    made: list[ChangeTracker] = []

    def make(root, start=True, wait=True, **kw):
        kw.setdefault("reconcile_s", 3600.0)
        kw.setdefault("baseline_dir", store_dir)
        t = ChangeTracker(root, str(tmp_path / f"runner{len(made)}"), **kw)
        made.append(t)
        if start:
            t.start(wait=wait)
        return t

    yield make
    for t in made:
        if not t._stop.is_set():  # not closed by the test itself
            t.close()


def listed(t) -> dict[str, str]:
    out = t.changes()
    return {e["path"]: e["status"] for e in out["data"]}


def diffs(t, paths) -> dict[str, tuple]:
    out = {}
    for p in paths:
        d = t.diff(p)
        out[p] = (d["status"], d["before"], d["after"], d["truncated"])
    return out


def manifest(store_dir) -> dict:
    with open(os.path.join(store_dir, MANIFEST)) as f:
        return json.load(f)


def _workspace(root):
    for name in ("keep", "mod_a", "mod_down", "del_down", "revert_down", "touch_down"):
        put(root, f"{name}.txt", f"{name} at start\n", mtime=OLD)
    put(root, "sub/deep.txt", "deep at start\n", mtime=OLD)
    put(root, "bin.dat", bytes(range(256)), mtime=OLD)


def test_a_new_tracker_reports_the_same_changes_and_diffs_including_while_none_ran(
    root, tracker, store_dir
):
    _workspace(root)
    a = tracker(root)
    assert a.reused == ""
    put(root, "mod_a.txt", "changed while A ran\n")
    put(root, "new_a.txt", "created while A ran\n")
    put(root, "bin.dat", bytes(range(255, -1, -1)))
    seen_by_a = listed(a)
    assert seen_by_a == {"mod_a.txt": "modified", "new_a.txt": "created", "bin.dat": "modified"}
    a_diffs = diffs(a, seen_by_a)
    a.close()
    assert manifest(store_dir)["complete"] is True

    # while no tracker runs
    put(root, "mod_down.txt", "changed while none ran\n")
    os.unlink(os.path.join(root, "del_down.txt"))
    put(root, "sub/new_down.txt", "created while none ran\n")
    put(root, "revert_down.txt", "revert_down at start\n")  # its first bytes again
    os.utime(os.path.join(root, "touch_down.txt"))  # stat only: same bytes

    b = tracker(root)
    assert b.reused == "complete"
    assert listed(b) == {
        **seen_by_a,
        "mod_down.txt": "modified",
        "del_down.txt": "deleted",
        "sub/new_down.txt": "created",
    }
    assert diffs(b, seen_by_a) == a_diffs  # A's diffs, `before` intact
    assert diffs(b, ["mod_down.txt", "del_down.txt", "sub/new_down.txt"]) == {
        "mod_down.txt": ("modified", "mod_down at start\n", "changed while none ran\n", False),
        "del_down.txt": ("deleted", "del_down at start\n", None, False),
        "sub/new_down.txt": ("created", None, "created while none ran\n", False),
    }
    # and it goes on tracking: a change after B started, one put back to its first bytes
    put(root, "keep.txt", "changed while B ran\n")
    put(root, "mod_a.txt", "mod_a at start\n")
    got = listed(b)
    assert got["keep.txt"] == "modified" and "mod_a.txt" not in got
    assert b.diff("keep.txt")["before"] == "keep at start\n"


def test_a_taken_up_baseline_reads_no_file_again(root, tracker, monkeypatch):
    """A relaunch costs a stat walk, not the bytes pass of a new baseline."""
    for i in range(50):
        put(root, f"d/f{i}.txt", f"file {i}\n", mtime=OLD)
    tracker(root).close()
    reads = []
    real = changes_mod.read_tracked
    monkeypatch.setattr(
        changes_mod, "read_tracked", lambda *a, **kw: reads.append(a[0]) or real(*a, **kw)
    )
    b = tracker(root)
    assert b.reused == "complete" and b.baseline_ready()
    assert reads == []
    put(root, "d/f3.txt", "changed\n")
    assert listed(b) == {"d/f3.txt": "modified"}
    assert b.diff("d/f3.txt")["before"] == "file 3\n"


def test_a_third_tracker_still_has_the_first_baseline(root, tracker):
    put(root, "a.txt", "first\n", mtime=OLD)
    tracker(root).close()
    put(root, "a.txt", "second\n")
    tracker(root).close()
    put(root, "a.txt", "third\n")
    c = tracker(root)
    assert listed(c) == {"a.txt": "modified"}
    assert c.diff("a.txt")["before"] == "first\n"


def test_another_workspace_for_the_session_takes_a_fresh_baseline(
    tmp_path, root, tracker, store_dir
):
    put(root, "a.txt", "in the first workspace\n", mtime=OLD)
    a = tracker(root)
    put(root, "a.txt", "changed\n")
    assert listed(a) == {"a.txt": "modified"}
    a.close()
    other = os.path.realpath(tmp_path / "other")
    put(other, "a.txt", "in the other workspace\n", mtime=OLD)
    b = tracker(other)
    assert b.reused == "" and listed(b) == {}
    assert manifest(store_dir)["root"] == other
    b.close()
    # the first workspace's baseline was replaced: back there, it starts afresh too
    c = tracker(root)
    assert c.reused == "" and listed(c) == {}


def test_a_plain_tracker_keeps_no_baseline_beyond_its_life(tmp_path, root):
    put(root, "a.txt", "x", mtime=OLD)
    t = ChangeTracker(root, str(tmp_path / "state"), reconcile_s=3600)
    t.start()
    t.close()
    assert not os.path.exists(tmp_path / "state")
    assert not os.path.exists(tmp_path / "baselines")


# a baseline left incomplete -------------------------------------------------------------

_HOLD_BYTES = textwrap.dedent(
    """
    import os, sys, time
    from omnigent.env import changes
    real = changes.read_tracked
    def slow(path, *a, **kw):
        if path.endswith("f40.txt"):  # the bytes pass stops here until killed
            print("HELD", flush=True)
            time.sleep(3600)
        return real(path, *a, **kw)
    changes.read_tracked = slow
    t = changes.ChangeTracker(sys.argv[1], sys.argv[2], baseline_dir=sys.argv[3])
    t.start(wait=False)
    print("WALKED", flush=True)
    time.sleep(3600)
    """
)


def _killed_mid_bytes(tmp_path, root, store_dir):
    """A real process takes the baseline and is SIGKILLed during its bytes pass."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_BYTES, root, str(tmp_path / "dead-runner"), store_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        assert sorted(lines) == ["HELD", "WALKED"], lines
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def test_killed_mid_bytes_pass_leaves_a_stat_only_baseline_that_is_completed(
    tmp_path, root, tracker, store_dir
):
    for i in range(60):
        put(root, f"d/f{i}.txt", f"file {i}\n", mtime=OLD)
    _killed_mid_bytes(tmp_path, root, store_dir)
    assert manifest(store_dir)["complete"] is False  # never trusted for its bytes
    put(root, "d/f1.txt", "changed while none ran\n")
    os.unlink(os.path.join(root, "d/f2.txt"))
    put(root, "d/new.txt", "created while none ran\n")

    b = tracker(root, wait=False)
    assert b.reused == "incomplete"
    assert listed(b) == {
        "d/f1.txt": "modified",
        "d/f2.txt": "deleted",
        "d/new.txt": "created",
    }
    # a file changed before its bytes were kept: compared by stat, no `before`
    assert diffs(b, ["d/f1.txt", "d/f2.txt"]) == {
        "d/f1.txt": ("modified", None, "changed while none ran\n", True),
        "d/f2.txt": ("deleted", None, None, True),
    }
    # the bytes of the untouched files were read again: their diffs are whole
    put(root, "d/f50.txt", "changed now\n")
    assert b.diff("d/f50.txt")["before"] == "file 50\n"
    assert manifest(store_dir)["complete"] is True
    b.close()
    c = tracker(root)
    assert c.reused == "complete"
    assert listed(c) == {
        "d/f1.txt": "modified",
        "d/f2.txt": "deleted",
        "d/new.txt": "created",
        "d/f50.txt": "modified",
    }
    assert c.diff("d/f50.txt")["before"] == "file 50\n"


def test_stopped_mid_bytes_pass_is_incomplete_too(root, tracker, store_dir, monkeypatch):
    for i in range(60):
        put(root, f"d/f{i}.txt", f"file {i}\n", mtime=OLD)
    real = changes_mod.read_tracked
    monkeypatch.setattr(
        changes_mod,
        "read_tracked",
        lambda path, *a, **kw: (time.sleep(0.02), real(path, *a, **kw))[1],
    )
    a = tracker(root, wait=False)
    time.sleep(0.2)
    a.close()  # the pass stops at its next file
    assert manifest(store_dir)["complete"] is False
    monkeypatch.setattr(changes_mod, "read_tracked", real)
    b = tracker(root)
    assert b.reused == "incomplete" and listed(b) == {}
    put(root, "d/f0.txt", "changed\n")
    assert b.diff("d/f0.txt")["before"] == "file 0\n"


# what cannot be trusted is replaced, never an error -------------------------------------


def _taken(root, tracker, store_dir):
    put(root, "a.txt", "at start\n", mtime=OLD)
    tracker(root).close()
    put(root, "a.txt", "changed\n")  # a fresh baseline would not list it


@pytest.mark.parametrize(
    "damage",
    [
        "manifest_garbage",
        "manifest_not_an_object",
        "manifest_missing_field",
        "index_missing",
        "index_flipped",
        "pack_truncated",
        "path_escapes",
    ],
)
def test_a_damaged_baseline_is_replaced_by_a_new_one(root, tracker, store_dir, damage):
    _taken(root, tracker, store_dir)
    m = manifest(store_dir)
    index = os.path.join(store_dir, f"index.{m['index_digest']}.json")
    if damage == "manifest_garbage":
        with open(os.path.join(store_dir, MANIFEST), "wb") as f:
            f.write(b"\x00{not json")
    elif damage == "manifest_not_an_object":
        with open(os.path.join(store_dir, MANIFEST), "w") as f:
            f.write("[1, 2]")
    elif damage == "manifest_missing_field":
        del m["started_ns"]
        with open(os.path.join(store_dir, MANIFEST), "w") as f:
            json.dump(m, f)
    elif damage == "index_missing":
        os.unlink(index)
    elif damage == "index_flipped":
        with open(index, "r+b") as f:
            f.seek(5)
            f.write(b"#")
    elif damage == "pack_truncated":
        os.truncate(os.path.join(store_dir, PACK), 2)
    elif damage == "path_escapes":
        with open(index) as f:
            data = json.load(f)
        data["files"][0][0] = "../outside.txt"
        raw = json.dumps(data, separators=(",", ":")).encode()
        digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
        with open(os.path.join(store_dir, f"index.{digest}.json"), "wb") as f:
            f.write(raw)
        m["index_digest"] = digest
        with open(os.path.join(store_dir, MANIFEST), "w") as f:
            json.dump(m, f)
    b = tracker(root)
    assert b.reused == ""  # a new baseline of the workspace as it is now
    assert listed(b) == {}
    assert manifest(store_dir)["complete"] is True
    b.close()
    put(root, "a.txt", "changed again\n")
    c = tracker(root)  # and that one is taken up again
    assert c.reused == "complete" and listed(c) == {"a.txt": "modified"}
    assert c.diff("a.txt")["before"] == "changed\n"


def test_an_unusable_store_leaves_the_tracker_working(tmp_path, root, tracker):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    put(root, "a.txt", "at start\n", mtime=OLD)
    t = tracker(root, baseline_dir=str(blocker / "conv_x"))
    put(root, "a.txt", "changed\n")
    assert listed(t) == {"a.txt": "modified"}
    assert t.diff("a.txt")["before"] == "at start\n"


def test_a_baseline_in_use_is_not_shared(root, tracker, store_dir):
    """Two live trackers of one session (a runner thought dead still running): the second
    keeps its own baseline and leaves the stored one alone."""
    put(root, "a.txt", "at start\n", mtime=OLD)
    a = tracker(root)
    before = manifest(store_dir)
    put(root, "a.txt", "changed\n")
    b = tracker(root)
    assert b.reused == "" and listed(b) == {}
    assert manifest(store_dir) == before
    assert listed(a) == {"a.txt": "modified"}


# where it lives, who may read it, when it goes ------------------------------------------


def test_the_baseline_is_private_to_the_user(root, tracker, store_dir):
    put(root, "a.txt", "secret\n", mtime=OLD)
    tracker(root)
    for path in (os.path.dirname(store_dir), store_dir):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    names = os.listdir(store_dir)
    assert {MANIFEST, PACK, "lock"} <= set(names)
    for name in names:
        assert stat.S_IMODE(os.stat(os.path.join(store_dir, name)).st_mode) == 0o600, name


@pytest.mark.parametrize("bad", ["", "..", ".", "../conv_x", "conv/x", "a\0b", "-x", "x" * 200])
def test_only_session_ids_name_a_baseline_directory(bad):
    with pytest.raises(ValueError):
        session_baseline_dir("omnigent-abc", bad)


def test_session_baselines_are_listed_and_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    d = session_baseline_dir("omnigent-abc", "conv_0001")
    assert d == str(tmp_path / ".omnigent" / "baselines" / "omnigent-abc" / "conv_0001")
    store = BaselineStore(d)
    assert store.acquire()
    store.release()
    os.makedirs(os.path.join(os.path.dirname(d), "not a session"))
    assert stored_sessions("omnigent-abc") == ["conv_0001"]
    assert stored_sessions("omnigent-other") == []
    assert remove_session_baseline("omnigent-abc", "conv_0001") is True
    assert not os.path.exists(d)
    assert remove_session_baseline("omnigent-abc", "conv_0001") is False
    with pytest.raises(ValueError):
        remove_session_baseline("omnigent-abc", "../omnigent-abc")
