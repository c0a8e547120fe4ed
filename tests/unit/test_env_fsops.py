"""Browse, read, write, edit and delete (omnigent.env.fsops) on real files."""

import base64
import glob
import os
import stat
import threading

import pytest

from omnigent.env import fsops
from omnigent.env.fsops import READ_CAP, delete_path, edit_file, get, write_file
from omnigent.errors import Conflict, HostIOError, InvalidPath, InvalidRequest, NotFound
from tests.unit.files import put

ENTRY = "session.environment.filesystem.entry"


@pytest.fixture
def outside(tmp_path):
    o = os.path.realpath(tmp_path / "outside")
    os.mkdir(o)
    with open(os.path.join(o, "secret"), "w") as f:
        f.write("top secret\n")
    return o


def read(root, rel):
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()


def tmp_leftovers(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


def paths(listing):
    return [e["path"] for e in listing["data"]]


# ---------------------------------------------------------------------------- listing


def test_list_root_entries_shape(root):
    put(root, "b.txt", b"hello", mtime=1_600_000_000)
    os.mkdir(os.path.join(root, "adir"))
    os.utime(os.path.join(root, "adir"), (1_600_000_100, 1_600_000_100))
    out = get(root, "")
    assert out["object"] == "list"
    assert out["has_more"] is False
    assert out["data"] == [
        {
            "id": "b.txt",
            "object": ENTRY,
            "name": "b.txt",
            "path": "b.txt",
            "type": "file",
            "bytes": 5,
            "modified_at": 1_600_000_000,
        },
        {
            "id": "adir",
            "object": ENTRY,
            "name": "adir",
            "path": "adir",
            "type": "directory",
            "bytes": None,
            "modified_at": 1_600_000_100,
        },
    ]
    assert out["first_id"] == "b.txt" and out["last_id"] == "adir"


def test_list_subdirectory_ids_are_relative_paths(root):
    for n in ["x", "y"]:
        put(root, f"src/pkg/{n}.py", b"1")
    out = get(root, "src/pkg", order="asc")
    assert paths(out) == ["src/pkg/x.py", "src/pkg/y.py"]
    assert [e["id"] for e in out["data"]] == ["src/pkg/x.py", "src/pkg/y.py"]
    assert [e["name"] for e in out["data"]] == ["x.py", "y.py"]
    # the same through a non-normalised spelling
    assert paths(get(root, "./src//pkg/", order="asc")) == ["src/pkg/x.py", "src/pkg/y.py"]


def test_list_empty_directory(root):
    os.mkdir(os.path.join(root, "empty"))
    out = get(root, "empty")
    assert out["data"] == [] and out["has_more"] is False
    assert out["first_id"] is None and out["last_id"] is None


@pytest.fixture
def ten(root):
    names = [f"f{i}" for i in range(10)]  # f0 .. f9 sort the same as text
    for n in names:
        put(root, n, n)
    return names


def test_list_desc_is_default_and_limit_pages(ten, root):
    out = get(root, "", limit=3)
    assert paths(out) == ["f9", "f8", "f7"]
    assert out["has_more"] is True
    out = get(root, "", limit=3, after="f7")
    assert paths(out) == ["f6", "f5", "f4"]
    out = get(root, "", limit=3, after="f1")
    assert paths(out) == ["f0"] and out["has_more"] is False


def test_list_asc_pages_cover_everything_once(ten, root):
    seen, cursor = [], None
    while True:
        out = get(root, "", limit=4, order="asc", after=cursor)
        seen += paths(out)
        if not out["has_more"]:
            break
        cursor = out["last_id"]
    assert seen == ten


def test_list_before_gives_the_directly_preceding_page(ten, root):
    out = get(root, "", limit=3, before="f2")  # desc: f9 f8 ... f3 precede f2
    assert paths(out) == ["f5", "f4", "f3"]
    assert out["has_more"] is True
    out = get(root, "", limit=3, before="f7")
    assert paths(out) == ["f9", "f8"] and out["has_more"] is False
    out = get(root, "", limit=3, order="asc", before="f5")
    assert paths(out) == ["f2", "f3", "f4"] and out["has_more"] is True


def test_list_cursor_is_keyset_and_survives_deletion(ten, root):
    os.unlink(os.path.join(root, "f5"))
    assert paths(get(root, "", limit=2, after="f5")) == ["f4", "f3"]
    assert paths(get(root, "", limit=2, order="asc", after="f5")) == ["f6", "f7"]
    # a cursor that never existed is compared by value too
    assert paths(get(root, "", limit=2, order="asc", after="f55")) == ["f6", "f7"]


def test_list_between_two_cursors(ten, root):
    assert paths(get(root, "", order="asc", after="f1", before="f4")) == ["f2", "f3"]


@pytest.mark.parametrize("kw", [{"limit": 0}, {"limit": 1001}])
def test_list_bad_parameters(ten, root, kw):
    with pytest.raises(InvalidRequest):
        get(root, "", **kw)


def test_list_skips_dangling_symlinks_and_keeps_the_page_full(ten, root):
    os.symlink("nowhere", os.path.join(root, "f45"))
    os.symlink("sub/gone", os.path.join(root, "f46"))
    out = get(root, "", limit=3, after="f7")  # desc: f6, f5, f46, f45, f4
    assert paths(out) == ["f6", "f5", "f4"]
    assert out["has_more"] is True
    out = get(root, "", limit=3, order="asc", before="f5")  # asc: f2 f3 f4 f45 f46 | f5
    assert paths(out) == ["f2", "f3", "f4"]


def test_list_link_leaving_root_tells_nothing_of_its_target(root, outside):
    """A symlink to the outside is `other` whether or not its target exists: the listing
    must not reveal what exists outside the root."""
    os.symlink(os.path.join(outside, "secret"), os.path.join(root, "exists"))
    os.symlink(os.path.join(outside, "gone"), os.path.join(root, "missing"))
    for name in ["exists", "missing"]:
        os.utime(os.path.join(root, name), (1_500_000_000, 1_500_000_000), follow_symlinks=False)
    data = get(root, "", order="asc")["data"]
    assert [e["path"] for e in data] == ["exists", "missing"]
    assert [(e["type"], e["bytes"], e["modified_at"]) for e in data] == [
        ("other", None, 1_500_000_000)
    ] * 2


def test_list_symlink_leaving_root_is_other_without_target_info(root, outside):
    os.utime(os.path.join(outside, "secret"), (1_000_000_000, 1_000_000_000))
    link = os.path.join(root, "out-link")
    os.symlink(os.path.join(outside, "secret"), link)
    os.utime(link, (1_500_000_000, 1_500_000_000), follow_symlinks=False)
    dir_link = os.path.join(root, "out-dir")
    os.symlink(outside, dir_link)
    os.utime(dir_link, (1_500_000_001, 1_500_000_001), follow_symlinks=False)
    by_path = {e["path"]: e for e in get(root, "")["data"]}
    assert by_path["out-link"]["type"] == "other"
    assert by_path["out-link"]["bytes"] is None
    assert by_path["out-link"]["modified_at"] == 1_500_000_000  # the link's, not the target's
    assert by_path["out-dir"]["type"] == "other"
    assert by_path["out-dir"]["modified_at"] == 1_500_000_001


def test_list_symlink_inside_root_shows_the_target(root):
    put(root, "real.txt", b"12345", mtime=1_600_000_000)
    os.symlink("real.txt", os.path.join(root, "alias.txt"))
    os.mkdir(os.path.join(root, "d"))
    os.symlink("d", os.path.join(root, "dlink"))
    by_path = {e["path"]: e for e in get(root, "")["data"]}
    assert by_path["alias.txt"]["type"] == "file"
    assert by_path["alias.txt"]["bytes"] == 5
    assert by_path["alias.txt"]["modified_at"] == 1_600_000_000
    assert by_path["dlink"]["type"] == "directory"


def test_list_fifo_is_other(root):
    os.mkfifo(os.path.join(root, "pipe"))
    (e,) = get(root, "")["data"]
    assert e["type"] == "other" and e["bytes"] is None


def test_get_missing_and_invalid(root, outside):
    with pytest.raises(NotFound) as ei:
        get(root, "nope")
    assert ei.value.code == "path_not_found"
    with pytest.raises(NotFound):
        get(root, "nope/deeper")
    os.symlink(outside, os.path.join(root, "out"))
    for rel in ["out", "out/secret", "../outside/secret", "/etc/passwd", "a\x00"]:
        with pytest.raises(InvalidPath):
            get(root, rel)


def test_get_below_a_file_is_not_found(root):
    """`a.txt/x` names nothing (ENOTDIR): 404 like any missing path, not a host I/O
    failure (502)."""
    put(root, "a.txt", b"x")
    with pytest.raises(NotFound):
        get(root, "a.txt/x")


# ---------------------------------------------------------------------------- reading


def test_read_utf8_text(root):
    put(root, "notes", "héllo wörld ✓\n".encode())
    out = get(root, "notes")
    assert out == {
        "object": "session.environment.filesystem.file_content",
        "path": "notes",
        "bytes": len("héllo wörld ✓\n".encode()),
        "truncated": False,
        "content_type": "text/plain",
        "encoding": "utf-8",
        "content": "héllo wörld ✓\n",
    }


def test_read_content_type_by_name(root):
    put(root, "data.json", b'{"a": 1}')
    put(root, "img.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    put(root, "blob", b"\xff\xfe\x00\x01")
    assert get(root, "data.json")["content_type"] == "application/json"
    img = get(root, "img.png")
    assert img["content_type"] == "image/png" and img["encoding"] == "base64"
    blob = get(root, "blob")
    assert blob["content_type"] == "application/octet-stream"
    assert base64.b64decode(blob["content"]) == b"\xff\xfe\x00\x01"


def test_read_invalid_utf8_is_base64(root):
    data = b"caf\xe9 latin-1"
    put(root, "latin1.txt", data)
    out = get(root, "latin1.txt")
    assert out["encoding"] == "base64"
    assert base64.b64decode(out["content"]) == data


def test_read_nul_is_base64_even_if_valid_utf8(root):
    data = b"abc\x00def"
    put(root, "nul.txt", data)
    out = get(root, "nul.txt")
    assert out["encoding"] == "base64"
    assert base64.b64decode(out["content"]) == data
    assert out["bytes"] == 7 and out["truncated"] is False


def test_read_empty_file(root):
    put(root, "empty", b"")
    out = get(root, "empty")
    assert out["encoding"] == "utf-8" and out["content"] == "" and out["bytes"] == 0
    assert out["truncated"] is False


def test_read_exactly_at_cap_is_not_truncated(root):
    put(root, "f", b"a" * 10)
    out = get(root, "f", cap=10)
    assert out["truncated"] is False and out["content"] == "a" * 10


def test_read_over_cap_is_truncated(root):
    put(root, "f", b"a" * 11)
    out = get(root, "f", cap=10)
    assert out["truncated"] is True and out["content"] == "a" * 10 and out["bytes"] == 11


def test_read_default_cap_is_read_cap(root):
    data = b"x" * (READ_CAP + 100)
    put(root, "big.txt", data)
    out = get(root, "big.txt")
    assert out["truncated"] is True
    assert out["bytes"] == READ_CAP + 100
    assert out["encoding"] == "utf-8"
    assert len(out["content"]) == READ_CAP


@pytest.mark.parametrize(
    "char, split_after", [("é", 1), ("✓", 1), ("✓", 2), ("😀", 1), ("😀", 2), ("😀", 3)]
)
def test_read_multibyte_char_split_at_cap_is_dropped(root, char, split_after):
    assert 0 < split_after < len(char.encode())
    cap = 20
    prefix = "a" * (cap - split_after)
    put(root, "t.txt", (prefix + char + "zzz").encode())
    out = get(root, "t.txt", cap=cap)
    assert out["truncated"] is True
    assert out["encoding"] == "utf-8"
    assert out["content"] == prefix


def test_read_multibyte_char_split_at_real_read_cap(root):
    prefix = b"a" * (READ_CAP - 1)
    put(root, "t.txt", prefix + "é tail".encode())
    out = get(root, "t.txt")
    assert out["truncated"] is True and out["encoding"] == "utf-8"
    assert out["content"] == prefix.decode()


def test_read_invalid_byte_just_before_the_cap_is_not_text(root):
    """Only a character *split by the cut* may be dropped. An invalid byte that lies
    inside the returned range (here 2 bytes before the cap) makes the file binary; it must
    not be silently dropped and the rest shown as UTF-8."""
    cap = 20
    data = b"a" * (cap - 2) + b"\xff" + b"b" + b"c" * 10
    put(root, "t.bin", data)
    out = get(root, "t.bin", cap=cap)
    assert out["truncated"] is True
    assert out["encoding"] == "base64"
    assert base64.b64decode(out["content"]) == data[:cap]


def test_read_fifo_does_not_block(root):
    os.mkfifo(os.path.join(root, "pipe"))
    result = {}

    def run():
        try:
            get(root, "pipe")
        except Exception as exc:  # noqa: BLE001
            result["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert isinstance(result.get("exc"), InvalidRequest)
    assert result["exc"].code == "not_a_file"


def test_read_through_symlink_inside_root(root):
    put(root, "src/real.txt", b"content")
    os.symlink("src/real.txt", os.path.join(root, "alias"))
    out = get(root, "alias")
    assert out["path"] == "alias" and out["content"] == "content"


def test_read_symlink_leaving_root_is_refused(root, outside):
    os.symlink(os.path.join(outside, "secret"), os.path.join(root, "s"))
    with pytest.raises(InvalidPath):
        get(root, "s")


# ---------------------------------------------------------------------------- write


def test_write_creates_with_parents(root):
    out = write_file(root, "a/b/c/new.txt", b"hello\n")
    assert read(root, "a/b/c/new.txt") == b"hello\n"
    assert out["object"] == "session.environment.filesystem.write_result"
    assert out["created"] is True and out["operation"] == "created"
    assert out["path"] == "a/b/c/new.txt" and out["bytes_written"] == 6
    assert out["entry"]["type"] == "file" and out["entry"]["bytes"] == 6
    assert out["entry"]["path"] == "a/b/c/new.txt"
    assert tmp_leftovers(os.path.join(root, "a/b/c")) == []


def test_write_replaces_existing(root):
    put(root, "f.txt", b"old content that is long")
    out = write_file(root, "f.txt", b"new")
    assert out["created"] is False and out["operation"] == "updated"
    assert read(root, "f.txt") == b"new"
    assert tmp_leftovers(root) == []


def test_write_empty_and_binary(root):
    write_file(root, "empty", b"")
    assert read(root, "empty") == b""
    blob = bytes(range(256)) * 10
    write_file(root, "blob", blob)
    assert read(root, "blob") == blob


def test_write_is_atomic_rename(root):
    """The target is replaced by a rename: a reader holding the old file keeps the old
    bytes, and the path gets a new inode."""
    put(root, "f.txt", b"version-1")
    old_ino = os.stat(os.path.join(root, "f.txt")).st_ino
    with open(os.path.join(root, "f.txt"), "rb") as held:
        write_file(root, "f.txt", b"version-2")
        assert held.read() == b"version-1"
    assert os.stat(os.path.join(root, "f.txt")).st_ino != old_ino
    assert read(root, "f.txt") == b"version-2"


def test_write_keeps_existing_mode(root):
    p = put(root, "run.sh", b"#!/bin/sh\n")
    os.chmod(p, 0o751)
    write_file(root, "run.sh", b"#!/bin/sh\necho hi\n")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o751
    os.chmod(p, 0o600)
    edit_file(root, "run.sh", "hi", "bye")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600


def test_write_new_file_default_mode_is_not_executable(root):
    write_file(root, "x", b"1")
    assert stat.S_IMODE(os.stat(os.path.join(root, "x")).st_mode) & 0o111 == 0


def test_write_a_directory_path_is_400(root):
    os.makedirs(os.path.join(root, "d", "inner"))
    with pytest.raises(InvalidRequest) as ei:
        write_file(root, "d", b"x")
    assert ei.value.code == "is_a_directory"
    assert os.path.isdir(os.path.join(root, "d", "inner"))
    assert tmp_leftovers(root) == []


def test_write_parent_is_a_file_is_409(root):
    put(root, "f", b"i am a file")
    for rel in ["f/x", "f/y/z"]:
        with pytest.raises(Conflict) as ei:
            write_file(root, rel, b"x")
        assert ei.value.code == "not_a_directory"
    assert read(root, "f") == b"i am a file"
    assert tmp_leftovers(root) == []


def test_write_root_is_refused(root):
    for rel in ["", ".", "a/.."]:
        with pytest.raises(InvalidPath):
            write_file(root, rel, b"x")


def test_write_never_lands_outside(root, outside):
    os.symlink(outside, os.path.join(root, "out"))
    os.symlink(os.path.join(outside, "created-by-write"), os.path.join(root, "dangle"))
    os.symlink(os.path.join(outside, "secret"), os.path.join(root, "s"))
    for rel in ["out/new", "out/sub/new", "dangle", "s", "../outside/x", "/tmp/x"]:
        with pytest.raises(InvalidPath):
            write_file(root, rel, b"pwned")
    assert sorted(os.listdir(outside)) == ["secret"]
    with open(os.path.join(outside, "secret")) as f:
        assert f.read() == "top secret\n"


def test_write_through_symlink_inside_root_updates_the_target(root):
    put(root, "src/real.txt", b"old")
    os.symlink("src/real.txt", os.path.join(root, "alias"))
    out = write_file(root, "alias", b"new")
    assert out["created"] is False
    assert os.path.islink(os.path.join(root, "alias"))
    assert read(root, "src/real.txt") == b"new"


def test_write_through_dangling_symlink_inside_root_creates_its_target(root):
    os.symlink("later.txt", os.path.join(root, "alias"))
    out = write_file(root, "alias", b"data")
    assert out["created"] is True
    assert read(root, "later.txt") == b"data"
    assert os.path.islink(os.path.join(root, "alias"))


@pytest.mark.parametrize("failing", ["fsync", "replace", "write"])
def test_write_failure_leaves_no_temp_file_and_old_content(root, monkeypatch, failing):
    put(root, "f.txt", b"original")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsops.os, failing, boom)
    with pytest.raises(HostIOError):
        write_file(root, "f.txt", b"replacement")
    monkeypatch.undo()
    assert read(root, "f.txt") == b"original"
    assert tmp_leftovers(root) == []
    assert glob.glob(os.path.join(root, ".*")) == []


def test_write_many_leaves_only_targets(root):
    for i in range(20):
        write_file(root, f"d/f{i}", str(i).encode())
        write_file(root, f"d/f{i}", str(i * 2).encode())
    assert sorted(os.listdir(os.path.join(root, "d"))) == sorted(f"f{i}" for i in range(20))
    assert read(root, "d/f7") == b"14"


# ---------------------------------------------------------------------------- edit


def test_edit_replaces_exactly_one(root):
    put(root, "m.py", b"def f():\n    return 'hello world'\n")
    out = edit_file(root, "m.py", "hello world", "goodbye wörld")
    assert read(root, "m.py").decode() == "def f():\n    return 'goodbye wörld'\n"
    assert out["object"] == "session.environment.filesystem.edit_result"
    assert out["replacements"] == 1 and out["path"] == "m.py"
    assert out["bytes_before"] == len("def f():\n    return 'hello world'\n")
    assert out["bytes_after"] == len(read(root, "m.py"))
    assert out["entry"]["bytes"] == out["bytes_after"]
    assert tmp_leftovers(root) == []


def test_edit_can_delete_text(root):
    put(root, "m.txt", b"keep DROP keep")
    edit_file(root, "m.txt", " DROP", "")
    assert read(root, "m.txt") == b"keep keep"


def _frozen(root, rel, data):
    p = put(root, rel, data)
    os.utime(p, ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    st = os.stat(p)
    return p, (st.st_ino, st.st_mtime_ns, st.st_size)


def _unchanged(root, rel, data, p, sig):
    st = os.stat(p)
    assert read(root, rel) == data
    assert (st.st_ino, st.st_mtime_ns, st.st_size) == sig
    assert tmp_leftovers(root) == []


def test_edit_text_not_found_changes_nothing(root):
    p, sig = _frozen(root, "m.txt", b"alpha beta")
    with pytest.raises(NotFound) as ei:
        edit_file(root, "m.txt", "gamma", "delta")
    assert ei.value.code == "text_not_found"
    _unchanged(root, "m.txt", b"alpha beta", p, sig)


def test_edit_ambiguous_changes_nothing(root):
    p, sig = _frozen(root, "m.txt", b"x = 1\nx = 1\n")
    with pytest.raises(Conflict) as ei:
        edit_file(root, "m.txt", "x = 1", "x = 2")
    assert ei.value.code == "ambiguous_match"
    _unchanged(root, "m.txt", b"x = 1\nx = 1\n", p, sig)


def test_edit_overlapping_occurrences_are_ambiguous(root):
    """ "aa" occurs twice in "aaa" (at 0 and 1); replacing either gives a different file
    ("Xa" vs "aX"), so the match is not unique. str.count counts non-overlapping hits
    only and reports 1."""
    p, sig = _frozen(root, "m.txt", b"aaa")
    with pytest.raises(Conflict) as ei:
        edit_file(root, "m.txt", "aa", "X")
    assert ei.value.code == "ambiguous_match"
    _unchanged(root, "m.txt", b"aaa", p, sig)


def test_edit_binary_file_is_400_and_untouched(root):
    data = b"abc\x00abc"
    p, sig = _frozen(root, "b.bin", data)
    with pytest.raises(InvalidRequest) as ei:
        edit_file(root, "b.bin", "abc", "xyz")
    assert ei.value.code == "not_text"
    _unchanged(root, "b.bin", data, p, sig)


def test_edit_empty_old_text_is_400(root):
    put(root, "m.txt", b"abc")
    with pytest.raises(InvalidRequest) as ei:
        edit_file(root, "m.txt", "", "x")
    assert ei.value.code == "invalid_edit"
    assert read(root, "m.txt") == b"abc"


def test_edit_missing_directory_and_outside(root, outside):
    with pytest.raises(NotFound):
        edit_file(root, "missing.txt", "a", "b")
    os.mkdir(os.path.join(root, "d"))
    with pytest.raises(InvalidRequest):
        edit_file(root, "d", "a", "b")
    os.symlink(os.path.join(outside, "secret"), os.path.join(root, "s"))
    with pytest.raises(InvalidPath):
        edit_file(root, "s", "top", "bottom")
    with open(os.path.join(outside, "secret")) as f:
        assert f.read() == "top secret\n"


# ---------------------------------------------------------------------------- delete


def test_delete_file(root):
    put(root, "d/f.txt", b"12345")
    out = delete_path(root, "d/f.txt")
    assert not os.path.lexists(os.path.join(root, "d/f.txt"))
    assert out == {
        "object": "session.environment.filesystem.delete_result",
        "operation": "deleted",
        "path": "d/f.txt",
        "deleted": True,
        "type": "file",
        "bytes_deleted": 5,
        "entries_deleted": 1,
    }


def test_delete_symlink_removes_the_link_not_the_target(root):
    put(root, "real.txt", b"keep me")
    os.makedirs(os.path.join(root, "realdir"))
    put(root, "realdir/inner", b"keep")
    os.symlink("real.txt", os.path.join(root, "flink"))
    os.symlink("realdir", os.path.join(root, "dlink"))
    os.symlink("nowhere", os.path.join(root, "dangle"))
    assert delete_path(root, "flink")["type"] == "symlink"
    assert delete_path(root, "dlink", recursive=True)["type"] == "symlink"
    assert delete_path(root, "dangle")["type"] == "symlink"
    for name in ["flink", "dlink", "dangle"]:
        assert not os.path.lexists(os.path.join(root, name))
    assert read(root, "real.txt") == b"keep me"
    assert read(root, "realdir/inner") == b"keep"


def test_delete_through_symlinked_parent(root):
    put(root, "realdir/inner", b"x")
    os.symlink("realdir", os.path.join(root, "dlink"))
    delete_path(root, "dlink/inner")
    assert not os.path.exists(os.path.join(root, "realdir/inner"))
    assert os.path.islink(os.path.join(root, "dlink"))


def test_delete_empty_directory(root):
    os.mkdir(os.path.join(root, "e"))
    out = delete_path(root, "e")
    assert out["type"] == "directory" and out["entries_deleted"] == 1
    assert not os.path.exists(os.path.join(root, "e"))


def test_delete_non_empty_directory_needs_recursive(root):
    put(root, "d/a.txt", b"123")
    put(root, "d/sub/b.txt", b"4567")
    with pytest.raises(Conflict) as ei:
        delete_path(root, "d")
    assert ei.value.code == "directory_not_empty"
    assert read(root, "d/sub/b.txt") == b"4567"
    out = delete_path(root, "d", recursive=True)
    assert out["type"] == "directory"
    assert out["bytes_deleted"] == 7
    assert out["entries_deleted"] == 4  # d, a.txt, sub, b.txt
    assert not os.path.exists(os.path.join(root, "d"))


def test_delete_root_is_refused(root):
    put(root, "f", b"x")
    for rel in ["", ".", "./", "a/.."]:
        with pytest.raises(InvalidPath) as ei:
            delete_path(root, rel, recursive=True)
        assert ei.value.code == "invalid_path"
    assert os.path.exists(os.path.join(root, "f"))


def test_delete_missing_is_not_found(root):
    with pytest.raises(NotFound) as ei:
        delete_path(root, "nope")
    assert ei.value.code == "path_not_found"
    with pytest.raises(NotFound):
        delete_path(root, "nope/deeper")


def test_delete_below_a_file_is_not_found(root):
    """`f/x` names nothing (ENOTDIR): 404, not a raw NotADirectoryError (500)."""
    put(root, "f", b"x")
    with pytest.raises(NotFound):
        delete_path(root, "f/x")
    assert read(root, "f") == b"x"


def test_delete_never_touches_outside(root, outside):
    os.symlink(outside, os.path.join(root, "out"))
    for rel in ["out/secret", "../outside/secret", "/etc/hostname"]:
        with pytest.raises(InvalidPath):
            delete_path(root, rel, recursive=True)
    assert os.path.exists(os.path.join(outside, "secret"))


# --- names and paths the kernel would refuse ------------------------------------------

LONG = "a/" * 3000 + "f.txt"  # 6005 bytes: over PATH_MAX


@pytest.mark.parametrize(
    "op",
    [
        lambda root, rel: write_file(root, rel, b"x"),
        lambda root, rel: get(root, rel),
        lambda root, rel: edit_file(root, rel, "a", "b"),
        lambda root, rel: delete_path(root, rel),
    ],
)
@pytest.mark.parametrize("rel", [LONG, "x" * 256, "d/" + "y" * 300 + "/f"])
def test_too_long_is_invalid_path_and_touches_nothing(root, op, rel):
    with pytest.raises(InvalidPath, match="too long"):
        op(root, rel)
    assert os.listdir(root) == []


def test_deep_paths_within_the_limit_work(root):
    """2,000 segments: os.makedirs would recurse past the interpreter's limit."""
    rel = "a/" * 2000 + "f.txt"
    try:
        assert write_file(root, rel, b"deep")["created"] is True
        assert get(root, rel)["content"] == "deep"
        assert write_file(root, rel, b"deeper")["created"] is False
        gone = delete_path(root, "a", recursive=True)
        assert gone["entries_deleted"] == 2001 and gone["bytes_deleted"] == 6
        assert os.listdir(root) == []
    finally:  # pytest's own clean-up (shutil.rmtree) cannot remove a tree this deep
        if os.path.isdir(os.path.join(root, "a")):
            fsops._rmtree(os.path.join(root, "a"))


def test_recursive_delete_counts_and_never_follows_symlinks(root, outside):
    put(root, "t/a.txt", "12345")
    put(root, "t/sub/b.bin", b"\x00" * 10)
    os.symlink(outside, os.path.join(root, "t", "sub", "out"))
    os.symlink(os.path.join(outside, "secret"), os.path.join(root, "t", "s"))
    os.mkdir(os.path.join(root, "t", "empty"))
    gone = delete_path(root, "t", recursive=True)
    # t, a.txt, sub, b.bin, out, s, empty; a file symlink's own size counts (as before)
    assert gone["entries_deleted"] == 7
    assert gone["bytes_deleted"] == 5 + 10 + len(os.path.join(outside, "secret"))
    assert not os.path.exists(os.path.join(root, "t"))
    assert read(outside, "secret") == b"top secret\n"


def test_names_at_name_max_can_be_written_and_edited(root):
    """The temporary file beside the target must fit in NAME_MAX too."""
    for name in ("n" * 255, "é" * 127 + "x"):
        assert len(name.encode()) == 255
        assert write_file(root, name, b"one")["created"] is True
        assert edit_file(root, name, "one", "two")["bytes_after"] == 3
        assert read(root, name) == b"two"
    assert len(os.listdir(root)) == 2  # no temporary file left behind


def test_enametoolong_and_eloop_from_the_disk_are_invalid_path():
    err = fsops._os_error(OSError(36, "File name too long"), "x")
    assert isinstance(err, InvalidPath)
    err = fsops._os_error(OSError(40, "Too many levels of symbolic links"), "x")
    assert isinstance(err, InvalidPath)
    assert isinstance(fsops._os_error(OSError(5, "Input/output error"), "x"), HostIOError)


def test_makedirs_is_exist_ok_and_refuses_a_file_on_the_way(root):
    fsops.makedirs(os.path.join(root, "p", "q"))
    fsops.makedirs(os.path.join(root, "p", "q"))
    put(root, "p/file", "x")
    with pytest.raises(NotADirectoryError):
        fsops.makedirs(os.path.join(root, "p", "file", "r"))
    with pytest.raises(FileExistsError):
        fsops.makedirs(os.path.join(root, "p", "file"))
