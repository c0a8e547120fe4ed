"""What changed since the session started (omnigent.env.changes), with real inotify.

Every tracker holds an inotify instance and threads: the `tracker` fixture closes each
one it made (the machine allows 128 inotify instances per user).
"""

import base64
import mmap
import os
import subprocess
import sys
import threading
import time

import pytest

from omnigent.env import changes as changes_mod
from omnigent.env.changes import ChangeTracker
from omnigent.errors import InvalidPath, NotFound
from tests.unit.files import put


def _inotify_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                n += 1
        except OSError:
            pass
    return n


@pytest.fixture
def tracker(tmp_path, root):
    """A factory: tracker(**kw) -> a started ChangeTracker on `root`; all are closed."""
    made = []

    def make(start=True, **kw):
        kw.setdefault("reconcile_s", 3600.0)  # no background pass unless a test asks
        t = ChangeTracker(root, str(tmp_path / f"state{len(made)}"), **kw)
        made.append(t)
        if start:
            t.start()
        return t

    yield make
    for t in made:
        t.close()
        # Safety net so that one test's leftovers cannot slow the next ones: make sure the
        # watcher thread ends even if close() did not end it (see test_close_*).
        fd = t._fd
        if fd is not None and fd.is_alive():
            fd.stop()
            fd.join(5)


def sh(root, command):
    subprocess.run(command, shell=True, cwd=root, check=True)


def listed(t):
    """{path: status} of changes()."""
    out = t.changes()
    assert out["object"] == "list" and out["has_more"] is False
    return {e["path"]: e["status"] for e in out["data"]}


OLD = 1_500_000_000  # an mtime far in the past, so any later change moves it


# ---------------------------------------------------------------------------- basics


def test_nothing_changed(root, tracker):
    put(root, "a.txt", b"a", mtime=OLD)
    put(root, "src/b.py", b"b", mtime=OLD)
    t = tracker()
    assert listed(t) == {}
    with pytest.raises(NotFound) as ei:
        t.diff("a.txt")
    assert ei.value.code == "not_changed"


def test_created_modified_deleted(root, tracker):
    put(root, "keep.txt", b"keep", mtime=OLD)
    put(root, "mod.txt", b"old text\n", mtime=OLD)
    put(root, "del.txt", b"bye\n", mtime=OLD)
    t = tracker()
    put(root, "new.txt", b"hello\n")
    with open(os.path.join(root, "mod.txt"), "ab") as f:
        f.write(b"more\n")
    os.unlink(os.path.join(root, "del.txt"))
    out = t.changes()
    by_path = {e["path"]: e for e in out["data"]}
    assert set(by_path) == {"new.txt", "mod.txt", "del.txt"}
    assert [e["path"] for e in out["data"]] == sorted(by_path)
    assert by_path["new.txt"]["status"] == "created"
    assert by_path["new.txt"]["bytes"] == 6
    assert by_path["new.txt"]["name"] == "new.txt"
    assert by_path["new.txt"]["modified_at"] == int(os.stat(os.path.join(root, "new.txt")).st_mtime)
    assert by_path["mod.txt"]["status"] == "modified"
    assert by_path["mod.txt"]["bytes"] == len(b"old text\nmore\n")
    assert by_path["del.txt"]["status"] == "deleted"
    assert by_path["del.txt"]["bytes"] is None and by_path["del.txt"]["modified_at"] is None


def test_changes_by_shell_in_nested_dirs(root, tracker):
    put(root, "src/pkg/m.py", b"x = 1\n", mtime=OLD)
    t = tracker()
    sh(root, "echo 'x = 2' > src/pkg/m.py && echo new > src/pkg/n.py")
    assert listed(t) == {"src/pkg/m.py": "modified", "src/pkg/n.py": "created"}


def test_created_then_deleted_is_not_listed(root, tracker):
    t = tracker()
    put(root, "tmp.txt", b"x")
    assert listed(t) == {"tmp.txt": "created"}
    os.unlink(os.path.join(root, "tmp.txt"))
    assert listed(t) == {}
    # also when never observed in between, and in a new directory
    sh(root, "mkdir -p scratch/deep && echo 1 > scratch/deep/x && rm -rf scratch")
    assert listed(t) == {}


def test_modified_back_to_original_bytes_is_not_listed(root, tracker):
    p = put(root, "f.txt", b"original\n", mtime=OLD)
    t = tracker()
    with open(p, "wb") as f:
        f.write(b"changed!\n")  # same size
    assert listed(t) == {"f.txt": "modified"}
    with open(p, "wb") as f:
        f.write(b"original\n")
    assert os.stat(p).st_mtime_ns != OLD * 10**9
    assert listed(t) == {}
    # changed again after being settled: listed again
    with open(p, "ab") as f:
        f.write(b"x")
    assert listed(t) == {"f.txt": "modified"}


def test_restored_by_atomic_rename_is_not_listed(root, tracker):
    p = put(root, "f.txt", b"same bytes", mtime=OLD)
    t = tracker()
    put(root, ".f.tmp", b"same bytes")
    os.replace(os.path.join(root, ".f.tmp"), p)
    assert listed(t) == {}


def test_touch_only_is_not_listed(root, tracker):
    p = put(root, "f.txt", b"abc", mtime=OLD)
    t = tracker()
    os.utime(p)
    os.chmod(p, 0o600)
    assert listed(t) == {}


def test_atomic_rename_write_is_detected(root, tracker):
    put(root, "conf.json", b'{"a": 1}', mtime=OLD)
    t = tracker()
    put(root, ".conf.json.tmp123", b'{"a": 2}')
    os.replace(os.path.join(root, ".conf.json.tmp123"), os.path.join(root, "conf.json"))
    # new file written the same way
    put(root, ".new.tmp", b"new")
    os.replace(os.path.join(root, ".new.tmp"), os.path.join(root, "new.txt"))
    assert listed(t) == {"conf.json": "modified", "new.txt": "created"}
    d = t.diff("conf.json")
    assert (d["before"], d["after"]) == ('{"a": 1}', '{"a": 2}')


def test_symlink_change_is_listed(root, tracker):
    put(root, "a", b"a", mtime=OLD)
    put(root, "b", b"b", mtime=OLD)
    os.symlink("a", os.path.join(root, "link"))
    t = tracker()
    os.unlink(os.path.join(root, "link"))
    os.symlink("b", os.path.join(root, "link"))
    assert listed(t) == {"link": "modified"}
    d = t.diff("link")
    assert (d["before"], d["after"]) == ("a", "b")


def test_file_replaced_by_directory(root, tracker):
    put(root, "thing", b"was a file", mtime=OLD)
    t = tracker()
    sh(root, "rm thing && mkdir thing && echo hi > thing/inner")
    assert listed(t) == {"thing": "deleted", "thing/inner": "created"}


# ---------------------------------------------------------------------------- no sleep


def test_mkdir_p_then_touch_is_listed_immediately(root, tracker):
    t = tracker()
    sh(root, "mkdir -p a/b/c && touch a/b/c/f")
    assert listed(t) == {"a/b/c/f": "created"}


def test_mkdir_p_then_touch_repeated(root, tracker):
    t = tracker()
    want = {}
    for i in range(20):
        sh(root, f"mkdir -p r{i}/b/c && echo {i} > r{i}/b/c/f && touch r{i}/b/g")
        want.update({f"r{i}/b/c/f": "created", f"r{i}/b/g": "created"})
        assert listed(t) == want, f"round {i}"


def test_thousand_files_in_one_subprocess_all_listed(root, tracker):
    t = tracker()
    code = (
        "import os\nos.makedirs('gen/sub', exist_ok=True)\n"
        "for i in range(500):\n"
        "    open(f'gen/sub/f{i:04d}.txt', 'w').write(str(i))\n"
        "    open(f'top{i:04d}.txt', 'w').write(str(i))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
    got = listed(t)
    want = {f"gen/sub/f{i:04d}.txt" for i in range(500)} | {f"top{i:04d}.txt" for i in range(500)}
    assert len(got) == 1000
    assert set(got) == want
    assert set(got.values()) == {"created"}


def test_thousand_files_by_shell_in_new_dir(root, tracker):
    t = tracker()
    sh(root, "mkdir -p bulk && cd bulk && for i in $(seq 1 1000); do : > f$i; done")
    got = listed(t)
    assert set(got) == {f"bulk/f{i}" for i in range(1, 1001)}


# ---------------------------------------------------------------------------- directories


def test_directory_renamed(root, tracker):
    put(root, "old/a.txt", b"a", mtime=OLD)
    put(root, "old/sub/b.txt", b"b", mtime=OLD)
    put(root, "other.txt", b"o", mtime=OLD)
    t = tracker()
    os.rename(os.path.join(root, "old"), os.path.join(root, "new"))
    assert listed(t) == {
        "old/a.txt": "deleted",
        "old/sub/b.txt": "deleted",
        "new/a.txt": "created",
        "new/sub/b.txt": "created",
    }
    # the renamed tree is still watched
    put(root, "new/sub/c.txt", b"c")
    assert listed(t)["new/sub/c.txt"] == "created"
    # and renaming it back restores the start state
    os.unlink(os.path.join(root, "new/sub/c.txt"))
    os.rename(os.path.join(root, "new"), os.path.join(root, "old"))
    assert listed(t) == {}
    put(root, "old/sub/d.txt", b"d")
    assert listed(t) == {"old/sub/d.txt": "created"}


def test_directory_moved_in_and_out_of_root(tmp_path, root, tracker):
    put(root, "leaving/x.txt", b"x", mtime=OLD)
    outside = tmp_path / "outside"
    put(str(outside), "arriving/y.txt", b"y")
    t = tracker()
    os.rename(os.path.join(root, "leaving"), str(outside / "left"))
    os.rename(str(outside / "arriving"), os.path.join(root, "arrived"))
    assert listed(t) == {"leaving/x.txt": "deleted", "arrived/y.txt": "created"}


def test_directory_removed_rm_rf(root, tracker):
    for i in range(5):
        put(root, f"gone/d{i}/f.txt", b"x", mtime=OLD)
    put(root, "gone/top.txt", b"t", mtime=OLD)
    put(root, "stay.txt", b"s", mtime=OLD)
    t = tracker()
    put(root, "gone/new-in-session.txt", b"n")
    sh(root, "rm -rf gone")
    want = {f"gone/d{i}/f.txt": "deleted" for i in range(5)}
    want["gone/top.txt"] = "deleted"
    assert listed(t) == want


def test_recreated_directory_is_watched_again(root, tracker):
    put(root, "d/f.txt", b"f", mtime=OLD)
    t = tracker()
    sh(root, "rm -rf d && mkdir d")
    assert listed(t) == {"d/f.txt": "deleted"}
    put(root, "d/f.txt", b"f2")
    assert listed(t) == {"d/f.txt": "modified"}
    put(root, "d/g.txt", b"g")
    assert listed(t) == {"d/f.txt": "modified", "d/g.txt": "created"}


# ---------------------------------------------------------------------------- ignored


def test_ignored_dirs_existing_at_start(root, tracker):
    put(root, "node_modules/lib/index.js", b"1", mtime=OLD)
    put(root, "web/node_modules/x.js", b"1", mtime=OLD)
    put(root, ".git/HEAD", b"ref: refs/heads/main\n", mtime=OLD)
    put(root, "env/pyvenv.cfg", b"home = /usr/bin\n", mtime=OLD)
    put(root, "env/lib/site.py", b"1", mtime=OLD)
    put(root, "src/main.py", b"1", mtime=OLD)
    t = tracker()
    sh(
        root,
        "echo 2 > node_modules/lib/index.js && echo n > node_modules/new.js"
        " && echo 2 > web/node_modules/x.js && echo x > .git/HEAD"
        " && echo o > .git/ORIG_HEAD && echo 2 > env/lib/site.py && touch env/lib/new.py"
        " && echo 2 > src/main.py",
    )
    t.reconcile()
    assert listed(t) == {"src/main.py": "modified"}


def test_ignored_dirs_created_in_session(root, tracker):
    t = tracker()
    sh(
        root,
        "mkdir -p node_modules/pkg && echo 1 > node_modules/pkg/i.js"
        " && mkdir -p sub/.git/objects && echo 1 > sub/.git/objects/ab"
        " && mkdir __pycache__ && echo 1 > __pycache__/m.pyc && echo 1 > real.txt",
    )
    assert listed(t) == {"real.txt": "created"}
    t.reconcile()
    assert listed(t) == {"real.txt": "created"}


def test_virtualenv_created_in_session_is_not_listed(root, tracker):
    """A virtual environment made during the session (`python -m venv env`) is a Python
    virtual environment: neither watched nor tracked, so none of its files are listed."""
    t = tracker()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "myenv"], cwd=root, check=True)
    put(root, "app.py", b"print(1)\n")
    got = listed(t)
    assert got == {"app.py": "created"}, sorted(got)


def test_diff_in_ignored_dir_is_not_found(root, tracker):
    """A file in an ignored directory is not tracked: it has no diff (404), and an
    unchanged one was certainly not `created` in this session."""
    put(root, ".git/config", b"[core]\n", mtime=OLD)
    put(root, "node_modules/x.js", b"1", mtime=OLD)
    t = tracker()
    for rel in [".git/config", "node_modules/x.js"]:
        with pytest.raises(NotFound):
            t.diff(rel)


def test_diff_through_symlinked_dir_of_unchanged_file_is_not_found(root, tracker):
    put(root, "real/f.txt", b"same", mtime=OLD)
    os.symlink("real", os.path.join(root, "alias"))
    t = tracker()
    assert listed(t) == {}
    with pytest.raises(NotFound):
        t.diff("alias/f.txt")


def test_git_ignored_files_are_listed(root, tracker):
    put(root, ".gitignore", b"*.log\nbuild/\nsecret.txt\n", mtime=OLD)
    sh(root, "git init -q . 2>/dev/null || true")
    t = tracker()
    sh(
        root,
        "echo x > debug.log && mkdir -p build && echo o > build/out.bin && echo s > secret.txt",
    )
    assert listed(t) == {
        "debug.log": "created",
        "build/out.bin": "created",
        "secret.txt": "created",
    }


# ---------------------------------------------------------------------------- reconcile


def test_mmap_write_found_after_reconcile(root, tracker):
    p = put(root, "data.bin", b"\x00" * 4096, mtime=OLD)
    t = tracker()
    with open(p, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[0:5] = b"hello"
        m.flush()
    assert os.stat(p).st_mtime_ns != OLD * 10**9
    t.reconcile()
    assert listed(t) == {"data.bin": "modified"}
    d = t.diff("data.bin")
    assert d["encoding"] == "base64"
    assert base64.b64decode(d["before"]) == b"\x00" * 4096
    assert base64.b64decode(d["after"]) == b"hello" + b"\x00" * 4091


def test_lost_events_trigger_reconcile_on_next_answer(root, tracker):
    """A queue overflow (events lost) makes the next answer walk the tree."""
    p = put(root, "data.bin", b"\x00" * 64, mtime=OLD)
    t = tracker()
    with open(p, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:  # no inotify event for this
        m[0:2] = b"ok"
    t.on_queue_overflow()
    assert t._lost_events is True
    assert t.quick() is False
    assert listed(t) == {"data.bin": "modified"}
    assert t._lost_events is False


def test_background_reconcile_finds_mmap_write(root, tracker):
    p = put(root, "data.bin", b"\x00" * 64, mtime=OLD)
    t = tracker(reconcile_s=0.1)
    with open(p, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[0:2] = b"ok"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if listed(t) == {"data.bin": "modified"}:
            break
        time.sleep(0.05)
    assert listed(t) == {"data.bin": "modified"}


def test_no_watcher_still_reports_changes(root, tracker, monkeypatch):
    """No inotify instance left: the tracker works by reconcile alone."""

    def no_inotify():
        raise OSError(24, "inotify instance limit reached")

    monkeypatch.setattr(changes_mod, "Watcher", no_inotify)
    put(root, "mod.txt", b"one", mtime=OLD)
    put(root, "del.txt", b"del", mtime=OLD)
    put(root, "back.txt", b"same", mtime=OLD)
    put(root, "node_modules/x.js", b"1", mtime=OLD)
    t = tracker()
    assert t._fd is None
    assert t.quick() is False
    sh(
        root,
        "echo two > mod.txt && rm del.txt && mkdir -p n/e/w && echo 1 > n/e/w/f"
        " && echo tmp > tmp.txt && rm tmp.txt && echo 2 > node_modules/x.js"
        " && echo changed > back.txt && printf same > back.txt",
    )
    assert listed(t) == {"mod.txt": "modified", "del.txt": "deleted", "n/e/w/f": "created"}
    d = t.diff("mod.txt")
    assert (d["before"], d["after"]) == ("one", "two\n")
    # and keeps working for later changes
    put(root, "later.txt", b"l")
    assert listed(t)["later.txt"] == "created"


def test_unwatchable_directory_falls_back_to_reconcile(root, tracker):
    """When no watch can be added (watch limit), changes in that directory are still
    found, and a watch is added once it becomes possible."""
    t = tracker()
    real_add = t._fd.add_callback

    def refuse(*a, **k):
        raise OSError(28, "inotify watch limit reached")

    t._fd.add_callback = refuse
    try:
        sh(root, "mkdir unwatched && echo 1 > unwatched/a")
        assert listed(t) == {"unwatched/a": "created"}
        put(root, "unwatched/b", b"2")  # no watch there: only a reconcile can see it
        assert listed(t) == {"unwatched/a": "created", "unwatched/b": "created"}
    finally:
        t._fd.add_callback = real_add
    assert listed(t) == {"unwatched/a": "created", "unwatched/b": "created"}
    assert "unwatched" in t._dir_wd  # the reconcile added the missing watch
    assert t._lost_events is False
    put(root, "unwatched/c", b"3")
    assert listed(t)["unwatched/c"] == "created"


# ---------------------------------------------------------------------------- diff


def test_diff_text_modified_created_deleted(root, tracker):
    put(root, "m.py", "x = 'é'\n".encode(), mtime=OLD)
    put(root, "d.txt", b"gone soon\n", mtime=OLD)
    t = tracker()
    put(root, "m.py", "x = 'ü'\ny = 2\n".encode())
    put(root, "c.txt", b"brand new\n")
    os.unlink(os.path.join(root, "d.txt"))
    m = t.diff("m.py")
    assert m["object"] == "session.environment.filesystem.file_diff"
    assert (m["path"], m["status"], m["encoding"], m["truncated"]) == (
        "m.py",
        "modified",
        "utf-8",
        False,
    )
    assert (m["before"], m["after"]) == ("x = 'é'\n", "x = 'ü'\ny = 2\n")
    c = t.diff("c.txt")
    assert (c["status"], c["before"], c["after"], c["encoding"]) == (
        "created",
        None,
        "brand new\n",
        "utf-8",
    )
    d = t.diff("./d.txt")
    assert (d["path"], d["status"], d["before"], d["after"]) == (
        "d.txt",
        "deleted",
        "gone soon\n",
        None,
    )


def test_diff_binary_is_base64_both_sides(root, tracker):
    before = b"text before"
    after = b"\x89PNG\x00\x01\x02"
    put(root, "f", before, mtime=OLD)
    put(root, "bin-created", mtime=None, data=b"\x00\xff")
    t = tracker()
    put(root, "f", after)
    d = t.diff("f")
    assert d["encoding"] == "base64"
    assert base64.b64decode(d["before"]) == before
    assert base64.b64decode(d["after"]) == after
    os.unlink(os.path.join(root, "bin-created"))
    d = t.diff("bin-created")
    assert (d["status"], d["encoding"], d["after"]) == ("deleted", "base64", None)
    assert base64.b64decode(d["before"]) == b"\x00\xff"


def test_diff_unchanged_missing_root_and_invalid(root, tracker):
    put(root, "same.txt", b"s", mtime=OLD)
    t = tracker()
    for rel in ["same.txt", "never-existed.txt", "", None, "src"]:
        with pytest.raises(NotFound):
            t.diff(rel)
    for rel in ["..", "../x", "a/../../x", "/etc/passwd", "a\x00b"]:
        with pytest.raises(InvalidPath):
            t.diff(rel)


def test_diff_symlink_leaving_root_is_invalid(tmp_path, root, tracker):
    out = tmp_path / "outside"
    put(str(out), "secret", b"s")
    t = tracker()
    os.symlink(str(out / "secret"), os.path.join(root, "s"))
    assert listed(t) == {"s": "created"}
    with pytest.raises(InvalidPath):
        t.diff("s")


def test_diff_after_is_cut_at_read_cap_and_stays_text(root, tracker):
    """A text file over READ_CAP: `after` is its first READ_CAP bytes, truncated. A
    multi-byte character split by that cut is dropped (as a read does), the rest stays
    UTF-8 rather than turning the whole diff into base64."""
    cap = changes_mod.READ_CAP
    t = tracker(file_cap=1024)
    put(root, "plain.txt", b"a" * (cap + 10))
    put(root, "split.txt", b"a" * (cap - 1) + "é and more".encode())
    d = t.diff("plain.txt")
    assert (d["status"], d["truncated"], d["encoding"]) == ("created", True, "utf-8")
    assert d["after"] == "a" * cap
    d = t.diff("split.txt")
    assert d["truncated"] is True
    assert d["encoding"] == "utf-8"
    assert d["after"] == "a" * (cap - 1)


# ---------------------------------------------------------------------------- caps


def test_file_over_file_cap_compared_by_stat(root, tracker):
    big = b"0123456789" * 10  # 100 bytes
    p = put(root, "big.txt", big, mtime=OLD)
    put(root, "small.txt", b"tiny", mtime=OLD)
    t = tracker(file_cap=16)
    assert t._base["big.txt"].offset == -1 and t._base["small.txt"].offset >= 0
    os.utime(p, (OLD + 10, OLD + 10))  # same bytes, stat changed: cannot tell -> modified
    os.utime(os.path.join(root, "small.txt"), (OLD + 10, OLD + 10))  # digest says same
    assert listed(t) == {"big.txt": "modified"}
    d = t.diff("big.txt")
    assert (d["status"], d["before"], d["truncated"], d["encoding"]) == (
        "modified",
        None,
        True,
        "utf-8",
    )
    assert d["after"] == big.decode()
    with open(p, "wb") as f:
        f.write(b"shrunk")
    d = t.diff("big.txt")
    assert (d["before"], d["after"], d["truncated"]) == (None, "shrunk", True)
    os.unlink(p)
    d = t.diff("big.txt")
    assert (d["status"], d["before"], d["after"], d["truncated"]) == ("deleted", None, None, True)


def test_pack_cap_limits_total_kept(root, tracker):
    put(root, "big.txt", b"x" * 100, mtime=OLD)
    t = tracker(pack_cap=50)
    assert t._base["big.txt"].offset == -1
    put(root, "big.txt", b"y" * 100)
    assert listed(t) == {"big.txt": "modified"}
    d = t.diff("big.txt")
    assert (d["before"], d["after"], d["truncated"]) == (None, "y" * 100, True)


def test_pack_cap_keeps_what_fits(root, tracker):
    for i in range(10):
        put(root, f"f{i}", bytes([65 + i]) * 10, mtime=OLD)
    t = tracker(pack_cap=55)
    kept = [rel for rel, b in t._base.items() if b.offset >= 0]
    assert len(kept) == 5 and len(t._base) == 10
    for rel in t._base:
        put(root, rel, b"z" * 10)
    got = listed(t)
    assert got == {f"f{i}": "modified" for i in range(10)}
    for rel in kept:
        d = t.diff(rel)
        assert d["before"] == chr(65 + int(rel[1:])) * 10
        assert d["truncated"] is False


# ---------------------------------------------------------------------------- lifecycle


def test_close_removes_state_dir(tmp_path, root, tracker):
    put(root, "f", b"x")
    t = tracker()
    assert os.path.isfile(os.path.join(t.state_dir, "baseline.pack"))
    t.close()
    assert not os.path.exists(t.state_dir)


def test_close_ends_watcher_thread_and_frees_inotify(root, tracker):
    """close() must end the tracker's threads and free its inotify instance. A watcher
    thread left behind spins on the closed instance (a busy loop holding the GIL)."""
    before_fds = _inotify_fds()
    before_threads = set(threading.enumerate())
    t = tracker()
    started = set(threading.enumerate()) - before_threads
    assert t._fd in started and len(started) == 2  # the watcher and the reconcile loop
    assert _inotify_fds() == before_fds + 1
    t.close()
    for th in started:
        th.join(2)
    assert [th.name for th in started if th.is_alive()] == []
    assert _inotify_fds() == before_fds


def test_many_trackers_do_not_leak(tmp_path, root):
    before_fds = _inotify_fds()
    watchers = []
    for i in range(10):
        t = ChangeTracker(root, str(tmp_path / f"many{i}"), reconcile_s=3600)
        t.start()
        t.close()
        assert not os.path.exists(str(tmp_path / f"many{i}"))
        watchers.append(t._fd)
    deadline = time.monotonic() + 2
    for w in watchers:
        w.join(max(0.0, deadline - time.monotonic()))
    leaked = [w for w in watchers if w.is_alive()]
    for w in leaked:  # keep the process usable even if close() leaks the thread
        w.stop()
        w.join(5)
    assert _inotify_fds() == before_fds
    assert len(leaked) == 0, f"{len(leaked)} of 10 watcher threads still running after close()"


# ---------------------------------------------------------------------------- speed


def test_changes_time_with_1000_changed_files(root, tracker):
    for i in range(500):
        put(root, f"m/f{i:04d}.txt", f"original {i:04d}\n".encode(), mtime=OLD)
    t = tracker()
    code = (
        "import os\n"
        "for i in range(500):\n"
        "    open(f'm/f{i:04d}.txt', 'w').write(f'modified {i:04d}\\n')\n"
        "    open(f'c{i:04d}.txt', 'w').write('x')\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
    t0 = time.perf_counter()
    out = t.changes()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = t.changes()
    second = time.perf_counter() - t0
    print(
        f"\nchanges() with 1000 changed files: first {first * 1000:.1f} ms, "
        f"again {second * 1000:.1f} ms"
    )
    assert len(out["data"]) == 1000
    statuses = {e["status"] for e in out["data"]}
    assert statuses == {"modified", "created"}
    assert again["data"] == out["data"]
    assert first < 0.2 and second < 0.2


# ---------------------------------------------------------------------- partial baseline


def test_partial_baseline_lists_only_files_newer_than_the_session(root, tracker):
    for i in range(5):
        put(root, f"old{i}.txt", f"{i}")
    time.sleep(0.1)
    t = tracker(max_files=2)
    assert t.partial is True
    sh(root, "echo new > new.txt")
    t.reconcile()  # marks every file the baseline does not hold as a suspect
    # files older than the session that the baseline could not hold are not "created"
    assert listed(t) == {"new.txt": "created"}


def test_own_state_directory_inside_the_root_is_not_tracked(tmp_path, root):
    t = ChangeTracker(root, os.path.join(root, ".omnigent", "runners", "r1"), reconcile_s=3600.0)
    try:
        t.start()
        put(root, "a.txt", "x")
        t.reconcile()
        assert listed(t) == {"a.txt": "created"}
    finally:
        t.close()


# baseline taken in the background (a launch is acknowledged after the stat walk) ------
def _many(root, n=3000, size=2000):
    for i in range(n):
        d = os.path.join(root, f"d{i // 100}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}.txt"), "wb") as f:
            f.write(bytes([65 + i % 26]) * size)


def test_background_baseline_catches_changes_made_while_the_bytes_are_read(tracker, root):
    _many(root)
    t = tracker(start=False)
    t.start(wait=False)
    # changed at once, while the baseline's bytes are (most likely) still being read:
    # the last files of the walk, the first ones, a same-size rewrite, a removal, a new file
    put(root, "d29/f2999.txt", b"Z" * 2000)
    put(root, "d0/f0.txt", b"changed")
    with open(os.path.join(root, "d15/f1500.txt"), "r+b") as f:
        f.write(b"!")  # same size, maybe the same mtime tick: only inotify tells
    os.unlink(os.path.join(root, "d10/f1000.txt"))
    put(root, "new.txt", b"new")
    assert listed(t) == {
        "d29/f2999.txt": "modified",
        "d0/f0.txt": "modified",
        "d15/f1500.txt": "modified",
        "d10/f1000.txt": "deleted",
        "new.txt": "created",
    }
    assert t.baseline_ready()


def test_background_baseline_keeps_the_first_bytes_of_untouched_files(tracker, root):
    _many(root, n=500)
    t = tracker(start=False)
    t.start(wait=False)
    assert t.wait_baseline(10)
    put(root, "d3/f300.txt", b"after")
    d = t.diff("d3/f300.txt")
    first = chr(65 + 300 % 26) * 2000  # what _many wrote there
    assert d["status"] == "modified" and d["before"] == first and d["after"] == "after"
    put(root, "d3/f300.txt", first.encode())  # written back to its first bytes: not listed
    assert listed(t) == {}


def test_a_file_changed_before_its_bytes_were_kept_diffs_without_before(tracker, root):
    _many(root, n=50)
    t = tracker(start=False)
    # the walk saw the file; then it changed before the bytes pass read it
    real_keep = t._keep_bytes
    gate = threading.Event()

    def held(walked):
        gate.wait(10)
        real_keep(walked)

    t._keep_bytes = held
    t.start(wait=False)
    put(root, "d0/f7.txt", b"changed early")
    gate.set()
    assert listed(t) == {"d0/f7.txt": "modified"}
    d = t.diff("d0/f7.txt")
    assert d["status"] == "modified" and d["before"] is None and d["after"] == "changed early"
    assert d["truncated"] is True  # its first bytes are not known, as for a file over the cap


def test_a_same_stat_change_before_the_bytes_were_kept_is_still_listed(tracker, root):
    _many(root, n=50)
    t = tracker(start=False)
    real_keep = t._keep_bytes
    gate = threading.Event()
    t._keep_bytes = lambda walked: (gate.wait(10), real_keep(walked))
    t.start(wait=False)
    path = os.path.join(root, "d0/f9.txt")
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(b"?")  # same size; the mtime is put back: only inotify saw it
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    gate.set()
    assert listed(t) == {"d0/f9.txt": "modified"}
