"""The files of a workspace as the change tracker sees them: which directories it
skips, how it walks the tree, and how it reads a tracked file's bytes."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass

IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".omnigent",
        "node_modules",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".gradle",
        ".next",
        ".terraform",
    }
)
FILE_CAP = 1024 * 1024  # bytes of one file kept in the baseline
PACK_CAP = 256 * 1024 * 1024  # bytes kept in the baseline in all
MAX_FILES = 300_000  # files in the baseline; past that it is partial
ENTRY = "session.environment.filesystem.entry"


@dataclass(frozen=True, slots=True)
class Base:
    """A file as it was at start. `offset` is -1 when its bytes were not kept."""

    key: tuple[int, int, int]  # (size, mtime_ns, inode)
    digest: bytes | None
    offset: int
    length: int


def stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def ignored_dir(path: str, name: str) -> bool:
    return name in IGNORED_DIRS or os.path.exists(os.path.join(path, "pyvenv.cfg"))


def b64_or_none(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def digest_of(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def read_tracked(path: str, st: os.stat_result, cap: int, *, cut: bool = False) -> bytes | None:
    """A tracked file's bytes (a symlink's are its target). Over `cap`: None, or with
    `cut` the first `cap` bytes. None if it is gone."""
    if st.st_size > cap and not cut:
        return None
    try:
        if stat.S_ISLNK(st.st_mode):
            return os.fsencode(os.readlink(path))
        with open(path, "rb", buffering=0, opener=open_nofollow) as f:
            data = f.read(cap + 1)
    except OSError:
        return None
    if len(data) > cap:
        return data[:cap] if cut else None
    return data


def open_nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def walk_files(root: str, on_dir=None):
    """Yield (relative path, lstat) of every regular file and symlink under root, not
    entering ignored directories or symlinked ones. `on_dir(rel)` runs before a directory
    is listed (the watcher adds its watch there)."""
    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(root, rel) if rel else root
        if on_dir is not None:
            on_dir(rel)
        try:
            it = os.scandir(path)
        except OSError:
            continue
        with it:
            for e in it:
                child = f"{rel}/{e.name}" if rel else e.name
                try:
                    if e.is_dir(follow_symlinks=False):
                        if not ignored_dir(e.path, e.name):
                            stack.append(child)
                    elif e.is_file(follow_symlinks=False) or e.is_symlink():
                        yield child, e.stat(follow_symlinks=False)
                except OSError:
                    continue
