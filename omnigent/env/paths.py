"""Containment: every path a client names stays inside the environment root.

A client path is relative to the root. It is refused (InvalidPath, 400) when it holds a
NUL byte, is absolute, climbs out of the root with `..`, or when its real path (symlinks
resolved, the symlinked parent directories too) is not inside the root's real path.
Real paths are compared component by component, never by string prefix, so a sibling
`/work/app-old` is not inside `/work/app`. A dangling symlink is judged by where it points,
so a write through it can never create a file outside.

It is refused as well, before anything touches the disk, when the kernel would refuse it:
a segment longer than NAME_MAX (255 bytes of UTF-8), or a whole path (root included, the
normalised one and the real one) of PATH_MAX (4096 bytes, with the final NUL) or more.
"""

from __future__ import annotations

import os
import posixpath

from omnigent.errors import InvalidPath

PATH_MAX = 4096  # bytes, the terminating NUL included (linux/limits.h)
NAME_MAX = 255  # bytes of one path segment


def shorten(text: str, keep: int = 60) -> str:
    """A path for an error message: never the whole of a 4 KiB one."""
    return text if len(text) <= keep else f"{text[:keep]}… ({len(text)} characters)"


def _encoded(path: str) -> bytes:
    try:
        return os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate: no file can have that name
        raise InvalidPath("path is not valid UTF-8") from None


def check_length(path: str, shown: str | None = None, within: str = "") -> None:
    """Raise InvalidPath if the kernel would answer ENAMETOOLONG for `path` (the message
    names `shown`, by default `path`; `within` says what the count includes)."""
    data = _encoded(path)
    if len(data) >= PATH_MAX:
        raise InvalidPath(
            f"path too long: {len(data)} bytes{within}, the limit is "
            f"{PATH_MAX - 1}: {shorten(path if shown is None else shown)}"
        )
    for segment in data.split(b"/"):
        if len(segment) > NAME_MAX:
            raise InvalidPath(
                f"path segment too long: {len(segment)} bytes, the limit is "
                f"{NAME_MAX}: {shorten(os.fsdecode(segment))}"
            )


def clean(rel: str | None) -> str:
    """The normalised relative path ("" for the root). Raises InvalidPath."""
    if not rel:
        return ""
    if "\x00" in rel:
        raise InvalidPath("path must not contain a NUL byte")
    if rel.startswith("/"):
        raise InvalidPath("path must be relative to the environment root")
    norm = posixpath.normpath(rel)
    if norm == ".." or norm.startswith("../"):
        raise InvalidPath("path must not leave the environment root")
    check_length(norm)
    return "" if norm == "." else norm


def inside(root: str, path: str) -> bool:
    """`path` is `root` or below it (both absolute and real)."""
    return path == root or path.startswith(root if root.endswith("/") else root + "/")


def resolve(root: str, rel: str | None) -> tuple[str, str]:
    """(relative, absolute real path) of a client path under `root` (a real path).

    The tail that does not exist yet stays as written; everything that exists is
    resolved, so the answer is where a read or a write would really land.
    """
    norm = clean(rel)
    if not norm:
        return "", root
    joined = os.path.join(root, norm)
    check_length(joined, norm, " with the environment root")
    real = os.path.realpath(joined)
    if not inside(root, real):
        raise InvalidPath(f"path leaves the environment root: {shorten(norm)}")
    if real != joined:
        check_length(real, norm, " once symlinks are resolved")  # they may make it longer
    return norm, real
