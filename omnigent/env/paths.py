"""Containment: every path a client names stays inside the environment root.

A client path is relative to the root. It is refused (InvalidPath, 400) when it holds a
NUL byte, is absolute, climbs out of the root with `..`, or when its real path (symlinks
resolved, the symlinked parent directories too) is not inside the root's real path.
Real paths are compared component by component, never by string prefix, so a sibling
`/work/app-old` is not inside `/work/app`. A dangling symlink is judged by where it points,
so a write through it can never create a file outside.
"""

from __future__ import annotations

import os
import posixpath

from omnigent.errors import InvalidPath


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
    real = os.path.realpath(os.path.join(root, norm))
    if not inside(root, real):
        raise InvalidPath(f"path leaves the environment root: {norm}")
    return norm, real

