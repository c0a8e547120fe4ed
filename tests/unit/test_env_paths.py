"""Containment of client paths (omnigent.env.paths) on real files and symlinks."""

import os

import pytest

from omnigent.env.paths import clean, inside, resolve
from omnigent.errors import InvalidPath, InvalidRequest


@pytest.fixture
def tree(tmp_path):
    """root = <tmp>/ws (a real path), a sibling <tmp>/ws-evil sharing its prefix, and
    an <tmp>/outside directory."""
    base = os.path.realpath(tmp_path)
    root = os.path.join(base, "ws")
    os.makedirs(os.path.join(root, "src", "pkg"))
    with open(os.path.join(root, "src", "a.py"), "w") as f:
        f.write("a\n")
    os.makedirs(os.path.join(base, "ws-evil"))
    with open(os.path.join(base, "ws-evil", "secret"), "w") as f:
        f.write("s\n")
    os.makedirs(os.path.join(base, "outside"))
    with open(os.path.join(base, "outside", "secret"), "w") as f:
        f.write("s\n")
    return base, root


# ---------------------------------------------------------------------------- clean


@pytest.mark.parametrize(
    "rel, want",
    [
        (None, ""),
        ("", ""),
        (".", ""),
        ("./", ""),
        ("a/..", ""),
        ("a", "a"),
        ("a/", "a"),
        ("./a//b/", "a/b"),
        ("a/./b", "a/b"),
        ("a/../b", "b"),
        ("a/b/../../c", "c"),
        ("..foo", "..foo"),  # a name that starts with dots is not a `..` segment
        ("a/..b/c..", "a/..b/c.."),
        ("...", "..."),
    ],
)
def test_clean_normalises(rel, want):
    assert clean(rel) == want


@pytest.mark.parametrize("rel", ["a\x00b", "\x00", "src/\x00", "../\x00"])
def test_clean_refuses_nul(rel):
    with pytest.raises(InvalidPath) as ei:
        clean(rel)
    assert ei.value.code == "invalid_path"
    assert isinstance(ei.value, InvalidRequest)  # -> 400


@pytest.mark.parametrize("rel", ["/", "/etc/passwd", "//x", "/a/../b"])
def test_clean_refuses_absolute(rel):
    with pytest.raises(InvalidPath) as ei:
        clean(rel)
    assert ei.value.code == "invalid_path"


@pytest.mark.parametrize(
    "rel", ["..", "../", "../x", "a/../..", "a/../../x", "./../x", "a/b/../../../x", "../ws/x"]
)
def test_clean_refuses_leaving_the_root(rel):
    with pytest.raises(InvalidPath) as ei:
        clean(rel)
    assert ei.value.code == "invalid_path"


# ---------------------------------------------------------------------------- inside


@pytest.mark.parametrize(
    "root, path, want",
    [
        ("/x/ws", "/x/ws", True),
        ("/x/ws", "/x/ws/a", True),
        ("/x/ws", "/x/ws/a/b", True),
        ("/x/ws", "/x/ws-evil", False),
        ("/x/ws", "/x/ws-evil/a", False),
        ("/x/ws", "/x/wsa", False),
        ("/x/ws", "/x", False),
        ("/x/ws", "/x/w", False),
        ("/x/ws", "/y/ws", False),
        ("/x/ws/", "/x/ws/a", True),
        ("/", "/anything", True),
    ],
)
def test_inside_compares_by_component(root, path, want):
    assert inside(root, path) is want


def test_resolve_root_and_plain_paths(tree):
    _, root = tree
    assert resolve(root, None) == ("", root)
    assert resolve(root, "") == ("", root)
    assert resolve(root, ".") == ("", root)
    assert resolve(root, "src/a.py") == ("src/a.py", os.path.join(root, "src", "a.py"))
    assert resolve(root, "src//pkg/") == ("src/pkg", os.path.join(root, "src", "pkg"))
    # a tail that does not exist yet stays as written
    assert resolve(root, "new/dir/f.txt") == (
        "new/dir/f.txt",
        os.path.join(root, "new", "dir", "f.txt"),
    )
    assert resolve(root, "src/../x") == ("x", os.path.join(root, "x"))


@pytest.mark.parametrize(
    "rel", ["a\x00", "/etc/passwd", "..", "../ws-evil/secret", "src/../../outside/secret"]
)
def test_resolve_refuses_bad_client_paths(tree, rel):
    _, root = tree
    with pytest.raises(InvalidPath):
        resolve(root, rel)


def test_resolve_symlink_inside_root_is_followed(tree):
    _, root = tree
    os.symlink("src/a.py", os.path.join(root, "link.py"))
    os.symlink("src", os.path.join(root, "srclink"))
    assert resolve(root, "link.py") == ("link.py", os.path.join(root, "src", "a.py"))
    assert resolve(root, "srclink/a.py") == ("srclink/a.py", os.path.join(root, "src", "a.py"))
    assert resolve(root, "srclink/new.txt")[1] == os.path.join(root, "src", "new.txt")


def test_resolve_symlink_leaving_root_is_refused(tree):
    base, root = tree
    os.symlink(os.path.join(base, "outside", "secret"), os.path.join(root, "abs-out"))
    os.symlink("../outside/secret", os.path.join(root, "rel-out"))
    os.symlink("/", os.path.join(root, "slash"))
    for rel in ["abs-out", "rel-out", "slash", "slash/etc/passwd"]:
        with pytest.raises(InvalidPath) as ei:
            resolve(root, rel)
        assert ei.value.code == "invalid_path"


def test_resolve_symlinked_parent_leaving_root_is_refused(tree):
    base, root = tree
    os.symlink(os.path.join(base, "outside"), os.path.join(root, "out"))
    os.symlink("../../../outside", os.path.join(root, "src", "pkg", "up"))
    for rel in [
        "out",
        "out/secret",
        "out/new-file",
        "out/new/dir/f",
        "src/pkg/up/secret",
        "src/pkg/up/new",
    ]:
        with pytest.raises(InvalidPath):
            resolve(root, rel)


def test_resolve_sibling_with_shared_prefix_is_outside(tree):
    """/x/ws-evil starts with the string /x/ws but is not inside /x/ws."""
    base, root = tree
    os.symlink(os.path.join(base, "ws-evil"), os.path.join(root, "evil"))
    os.symlink("../ws-evil/secret", os.path.join(root, "evil-file"))
    for rel in ["evil", "evil/secret", "evil/new", "evil-file"]:
        with pytest.raises(InvalidPath):
            resolve(root, rel)


def test_resolve_dangling_symlink_is_judged_by_its_target(tree):
    base, root = tree
    os.symlink(os.path.join(base, "outside", "not-there"), os.path.join(root, "dangle-out"))
    os.symlink(os.path.join(base, "ws-evil", "not-there"), os.path.join(root, "dangle-evil"))
    os.symlink("src/not-yet", os.path.join(root, "dangle-in"))
    with pytest.raises(InvalidPath):
        resolve(root, "dangle-out")
    with pytest.raises(InvalidPath):
        resolve(root, "dangle-evil")
    assert resolve(root, "dangle-in") == ("dangle-in", os.path.join(root, "src", "not-yet"))


def test_resolve_symlink_chain_leaving_root_is_refused(tree):
    base, root = tree
    os.symlink(os.path.join(base, "outside"), os.path.join(root, "hop2"))
    os.symlink("hop2", os.path.join(root, "hop1"))
    with pytest.raises(InvalidPath):
        resolve(root, "hop1/secret")


def test_resolve_root_given_as_its_real_path(tmp_path):
    """The workspace reached through a symlink: callers pass the real path as root and
    then plain paths resolve under it (and the symlinked spelling is not it)."""
    base = os.path.realpath(tmp_path)
    real_ws = os.path.join(base, "real-ws")
    os.makedirs(os.path.join(real_ws, "d"))
    os.symlink(real_ws, os.path.join(base, "alias"))
    root = os.path.realpath(os.path.join(base, "alias"))
    assert root == real_ws
    assert resolve(root, "d") == ("d", os.path.join(real_ws, "d"))
    assert resolve(root, "d/x") == ("d/x", os.path.join(real_ws, "d", "x"))
    # a symlink inside the tree that names the root through the alias still resolves inside
    os.symlink(os.path.join(base, "alias", "d"), os.path.join(real_ws, "via-alias"))
    assert resolve(root, "via-alias") == ("via-alias", os.path.join(real_ws, "d"))


# ---------------------------------------------------------------------------- length


@pytest.mark.parametrize(
    "rel",
    [
        "a/" * 3000 + "f.txt",  # 6005 bytes: over PATH_MAX
        "x" * 4096,  # one segment over NAME_MAX, and over PATH_MAX
        "x" * 256,  # one segment just over NAME_MAX
        "d/" + "é" * 128,  # 256 bytes of UTF-8 in 128 characters
    ],
)
def test_clean_refuses_paths_the_kernel_would_refuse(rel):
    with pytest.raises(InvalidPath) as ei:
        clean(rel)
    assert "too long" in ei.value.message
    assert len(ei.value.message) < 300  # never the whole path echoed back


def test_clean_accepts_paths_at_the_limits():
    assert clean("x" * 255) == "x" * 255
    assert clean("é" * 127) == "é" * 127  # 254 bytes
    deep = "a/" * 2047 + "b"  # 4095 bytes
    assert clean(deep) == deep
    assert clean("a/../" * 2000 + "b") == "b"  # judged once normalised


def test_resolve_counts_the_root_too(tree):
    _, root = tree
    room = 4095 - len(root) - 1  # bytes left after "<root>/"
    name = ("a/" * (room // 2))[: room - 1] + "b"
    assert len(os.path.join(root, name)) == 4095
    assert resolve(root, name)[0] == name
    with pytest.raises(InvalidPath, match="with the environment root"):
        resolve(root, name + "c")


def test_resolve_counts_where_a_symlink_leads(tree):
    _, root = tree
    far = os.path.join(root, "far", *(["d" * 200] * 18))  # a 3.6 KiB real directory
    os.makedirs(far)
    os.symlink(far, os.path.join(root, "near"))
    assert resolve(root, "near/short")[1] == os.path.join(far, "short")
    with pytest.raises(InvalidPath, match="once symlinks are resolved"):
        resolve(root, "near/" + "x" * 250 + "/" + "y" * 250)


def test_clean_refuses_lone_surrogates():
    with pytest.raises(InvalidPath):
        clean("a\ud800b")
