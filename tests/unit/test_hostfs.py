"""Host directory listings on a real directory (omnigent.hostfs.list_directory)."""

import os

import pytest

from omnigent.errors import HostIOError, InvalidPath, NotFound
from omnigent.hostfs import list_directory


def ls(path, home="/nonexistent-home", limit=100, after=None, before=None):
    return list_directory(path, home, limit=limit, after=after, before=before)


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"hello")
    (tmp_path / ".hidden").write_bytes(b"")
    (tmp_path / "adir").mkdir()
    (tmp_path / "Cap").write_bytes(b"x")
    os.symlink(tmp_path / "adir", tmp_path / "link-to-dir")
    os.symlink(tmp_path / "missing", tmp_path / "dangling")
    return tmp_path


def names(env):
    return [e["name"] for e in env["data"]]


def test_sorted_hidden_included_dangling_left_out(tree):
    env = ls(str(tree))
    assert names(env) == [".hidden", "Cap", "adir", "b.txt", "link-to-dir"]
    assert env["object"] == "list" and env["has_more"] is False
    assert env["first_id"] == str(tree / ".hidden")
    assert env["last_id"] == str(tree / "link-to-dir")


def test_entry_fields(tree):
    by_name = {e["name"]: e for e in ls(str(tree))["data"]}
    f = by_name["b.txt"]
    assert f["type"] == "file" and f["bytes"] == 5
    assert f["path"] == str(tree / "b.txt")
    assert f["modified_at"] == int(os.stat(tree / "b.txt").st_mtime)
    d = by_name["adir"]
    assert d["type"] == "directory" and d["bytes"] is None and isinstance(d["modified_at"], int)
    assert by_name["link-to-dir"]["type"] == "directory"  # symlink followed
    assert by_name["link-to-dir"]["path"] == str(tree / "link-to-dir")


def test_path_without_leading_slash_is_absolute(tree):
    assert names(ls(str(tree).lstrip("/"))) == names(ls(str(tree)))


def test_tilde_expands_to_given_home(tree):
    env = ls("~", home=str(tree))
    assert "b.txt" in names(env)
    assert env["data"][0]["path"] == str(tree / ".hidden")
    sub = ls("~/adir", home=str(tree))
    assert sub["data"] == [] and sub["first_id"] is None


def test_none_means_home(tree):
    assert names(ls(None, home=str(tree))) == names(ls(str(tree)))


def test_missing_dir_is_not_found(tree):
    with pytest.raises(NotFound) as ei:
        ls(str(tree / "nope"))
    assert ei.value.code == "not_found"


def test_file_is_not_found(tree):
    with pytest.raises(NotFound):
        ls(str(tree / "b.txt"))


def test_dotdot_is_invalid_path(tree):
    with pytest.raises(InvalidPath):
        ls(str(tree / "adir" / ".." / "adir"))


def test_pagination_after_and_before(tree):
    first = ls(str(tree), limit=2)
    assert names(first) == [".hidden", "Cap"] and first["has_more"] is True
    second = ls(str(tree), limit=2, after=first["last_id"])
    assert names(second) == ["adir", "b.txt"] and second["has_more"] is True
    third = ls(str(tree), limit=2, after=second["last_id"])
    assert names(third) == ["link-to-dir"] and third["has_more"] is False
    back = ls(str(tree), limit=2, before=second["first_id"])
    assert names(back) == [".hidden", "Cap"] and back["has_more"] is False


def test_cursor_of_deleted_entry_still_works(tree):
    cursor = str(tree / "b.txt")
    os.remove(cursor)
    assert names(ls(str(tree), after=cursor)) == ["link-to-dir"]


def _unreadable_dir(tmp_path):
    try:
        os.listdir("/proc/1/map_files")
    except PermissionError:
        return "/proc/1/map_files"
    except OSError:
        pass
    if os.geteuid() != 0:
        d = tmp_path / "locked"
        d.mkdir()
        d.chmod(0)
        return str(d)
    return None


def test_unreadable_dir_is_host_io_error(tmp_path):
    path = _unreadable_dir(tmp_path)
    if path is None:
        pytest.skip("no directory this process cannot list (root without /proc/1/map_files)")
    try:
        with pytest.raises(HostIOError) as ei:
            ls(path)
        assert ei.value.code == "host_io_error"
    finally:
        if path.startswith(str(tmp_path)):
            os.chmod(path, 0o700)


def test_tilde_user_expands_via_user_database():
    import pwd

    me = pwd.getpwuid(os.getuid())
    if not os.path.isdir(me.pw_dir):
        pytest.skip(f"home of {me.pw_name} does not exist")
    env = ls(f"~{me.pw_name}", limit=1000)
    home = os.path.normpath(me.pw_dir)
    assert all(os.path.dirname(e["path"]) == home for e in env["data"])
    assert set(names(env)) <= set(os.listdir(home))


def test_unknown_tilde_user_is_not_found():
    with pytest.raises(NotFound):
        ls("~no_such_user_omnigent_xyz/x")


@pytest.mark.parametrize("path", ["/" + "a/" * 3000, "/tmp/" + "x" * 256, "~/" + "y" * 300])
def test_paths_the_kernel_would_refuse_are_invalid_path(path):
    with pytest.raises(InvalidPath, match="too long"):
        ls(path, home="/tmp")


def test_a_symlink_loop_is_invalid_path(tmp_path):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    with pytest.raises(InvalidPath, match="symbolic links"):
        ls(str(tmp_path / "loop"))
