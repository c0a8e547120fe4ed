"""Host path rules (omnigent.domain.host_paths)."""

import pytest

from omnigent.domain.host_paths import expand_home, normalize_host_path
from omnigent.errors import InvalidPath


@pytest.mark.parametrize("raw", [None, ""])
def test_empty_means_home(raw):
    assert normalize_host_path(raw) == "~"


@pytest.mark.parametrize(
    "raw, want",
    [
        ("home/alice", "/home/alice"),  # the route strips the leading "/": put it back
        ("/home/alice", "/home/alice"),
        ("//etc", "/etc"),
        ("/", "/"),
        ("~", "~"),
        ("~/src", "~/src"),
        ("~bob/x", "~bob/x"),
        ("a/..foo/b..", "/a/..foo/b.."),  # names containing ".." are not ".." segments
        ("a/.hidden", "/a/.hidden"),
    ],
)
def test_normalize(raw, want):
    assert normalize_host_path(raw) == want


@pytest.mark.parametrize("raw", ["a\x00b", "\x00", "~/\x00"])
def test_nul_byte_is_invalid_path(raw):
    with pytest.raises(InvalidPath) as ei:
        normalize_host_path(raw)
    assert ei.value.code == "invalid_path"


@pytest.mark.parametrize("raw", ["..", "/..", "a/../b", "a/..", "~/..", "~/x/../y", "/a/../"])
def test_dotdot_segment_is_invalid_path(raw):
    with pytest.raises(InvalidPath) as ei:
        normalize_host_path(raw)
    assert ei.value.code == "invalid_path"


@pytest.mark.parametrize(
    "path, home, want",
    [
        ("~", "/home/alice", "/home/alice"),
        ("~/", "/home/alice", "/home/alice"),
        ("~/src/x", "/home/alice", "/home/alice/src/x"),
        ("~/src", "/home/alice/", "/home/alice/src"),
        ("~", "/", "/"),
        ("~/x", "/", "/x"),
        ("/etc//ssh/", "/home/alice", "/etc/ssh"),
        ("~bob/x", "/home/alice", "~bob/x"),  # left to the host's user database
    ],
)
def test_expand_home(path, home, want):
    assert expand_home(path, home) == want


def test_normalize_then_expand_never_gives_relative_path():
    for raw in [None, "", "etc", "~", "~/a"]:
        assert expand_home(normalize_host_path(raw), "/root").startswith("/")
