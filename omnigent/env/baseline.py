"""A session's change baseline kept on its host, beside the session rather than the runner.

A runner's change tracker (omnigent.env.changes) compares the workspace with its
*baseline*, the workspace as it was when the session started. The baseline is stored
here, keyed by session, so that a new runner for the same session and the same workspace
(after a crash, a host reboot or a deliberate relaunch) takes it up again instead of
taking a new one:

    ~/.omnigent/baselines/<namespace>/<session id>/     0700
        manifest.json   what the baseline is of, whether it is complete, its index  0600
        index.<digest>.json   every file's (size, mtime, inode) and where its bytes are
        baseline.pack   the files' bytes (within caps), one after the other
        lock            held (flock) by the one runner using the baseline

Every write of the manifest and the index is atomic (temporary file, fsync, rename,
fsync of the directory); an index is named by its digest and the manifest names the one
it vouches for, so the manifest (renamed last) switches from one baseline to the next.
A baseline is taken in two steps (the stat walk, then the bytes): after the walk the
index holds the files' stats only and the manifest says `complete: false`; once every
byte is in the pack (fsynced), the full index is written, then the manifest with
`complete: true`. So a runner killed half way leaves a baseline that is
trusted for its stats only: the next runner compares files by stat alone until it has
read the bytes again of the files whose stat is still the baseline's (see
ChangeTracker.start), and then completes it.

The manifest names the environment root's real path; a baseline of another root is
replaced. A manifest or an index that cannot be read, does not parse, or does not match
(its digest, the pack's size) is logged and replaced by a new baseline: never an error.

It is removed when the session is deleted (HostActor.forget_baseline) and by the host's
sweep of baselines whose session no longer exists (HostActor.sweep_baselines); never
when a runner merely stops or dies.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from typing import IO

from omnigent.env.tree import Base

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
PACK = "baseline.pack"
LOCK = "lock"
# Session ids are `conv_<hex>` (omnigent.ids); anything else never names a directory.
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def baselines_dir(namespace: str) -> str:
    """Where one server's (Ray namespace's) session baselines are, on this host."""
    if not _NAMESPACE.fullmatch(namespace) or namespace in (".", ".."):
        raise ValueError(f"not a namespace: {namespace!r}")
    return os.path.join(os.path.expanduser("~/.omnigent/baselines"), namespace)


def valid_session_id(session_id: str) -> bool:
    return bool(_SESSION_ID.fullmatch(session_id))


def session_baseline_dir(namespace: str, session_id: str) -> str:
    """The session's baseline directory; ValueError for an id that is not a session id."""
    if not valid_session_id(session_id):
        raise ValueError(f"not a session id: {session_id!r}")
    return os.path.join(baselines_dir(namespace), session_id)


def remove_session_baseline(namespace: str, session_id: str) -> bool:
    """Remove a session's baseline (the session is gone); whether there was one."""
    path = session_baseline_dir(namespace, session_id)
    if not os.path.lexists(path):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def stored_sessions(namespace: str) -> list[str]:
    """The session ids that have a baseline on this host."""
    try:
        names = os.listdir(baselines_dir(namespace))
    except OSError:
        return []
    return sorted(n for n in names if valid_session_id(n))


@dataclass
class Stored:
    """A baseline found again. Incomplete: `base` holds stats only (no bytes)."""

    root: str
    complete: bool
    partial: bool
    started_ns: int
    base: dict[str, Base]


class BaselineStore:
    """One session's baseline directory (see the module's docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock_fd = -1

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def pack_path(self) -> str:
        return self._file(PACK)

    # the directory and its lock -------------------------------------------------------
    def acquire(self) -> bool:
        """Make the directory (0700, its parents too) and take its lock; False if another
        live process holds it (a runner of the session that is somehow still running)."""
        parent = os.path.dirname(self.path)
        os.makedirs(parent, mode=0o700, exist_ok=True)
        os.chmod(parent, 0o700)
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            pass
        if os.path.islink(self.path) or not os.path.isdir(self.path):
            raise OSError(errno.ENOTDIR, "not a directory", self.path)
        os.chmod(self.path, 0o700)
        fd = os.open(self._file(LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    # reading --------------------------------------------------------------------------
    def load(self, root: str) -> Stored | None:
        """The stored baseline of `root`, or None: none there, one of another root, or one
        that cannot be trusted (then removed, and the reason logged). Never raises."""
        try:
            with open(self._file(MANIFEST), "rb") as f:
                manifest = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._discard(f"unreadable manifest ({exc})")
            return None
        try:
            return self._load(manifest, root)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            self._discard(f"corrupt baseline ({type(exc).__name__}: {exc})")
            return None

    def _load(self, manifest: dict, root: str) -> Stored | None:
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError("not a baseline manifest of this format")
        if manifest["root"] != root:
            log.info("baseline %s is of %s, not %s: a new one", self.path, manifest["root"], root)
            self.invalidate()
            return None
        complete = manifest["complete"]
        if not isinstance(complete, bool):
            raise TypeError("complete is not a boolean")
        digest = manifest["index_digest"]
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{32}", digest):
            raise ValueError("no index digest")
        with open(self._file(_index_name(digest)), "rb") as f:
            raw = f.read()
        if _digest(raw) != digest:
            raise ValueError("the index does not match the manifest")
        rows = json.loads(raw)["files"]
        pack_size = os.path.getsize(self.pack_path) if complete else 0
        if complete and pack_size < int(manifest["pack_bytes"]):
            raise ValueError("the pack is shorter than the manifest says")
        base: dict[str, Base] = {}
        for rel, size, mtime_ns, ino, digest, offset, length in rows:
            if not _relative(rel):
                raise ValueError(f"not a relative path: {rel!r}")
            key = (int(size), int(mtime_ns), int(ino))
            if not complete or digest is None or int(offset) < 0:
                base[rel] = Base(key, None, -1, 0)  # stat only
                continue
            start, end = int(offset), int(offset) + int(length)
            if not start <= end <= pack_size or len(digest) != 32:
                raise ValueError(f"bytes of {rel!r} outside the pack")
            base[rel] = Base(key, bytes.fromhex(digest), start, int(length))
        return Stored(
            root=root,
            complete=complete,
            partial=bool(manifest["partial"]),
            started_ns=int(manifest["started_ns"]),
            base=base,
        )

    def _discard(self, why: str) -> None:
        log.warning("change baseline %s not used: %s; a new one is taken", self.path, why)
        self.invalidate()

    # writing --------------------------------------------------------------------------
    def invalidate(self) -> None:
        """No longer a baseline anyone may take up (the manifest goes first)."""
        for name in (MANIFEST, PACK, *self._indexes()):
            try:
                os.unlink(self._file(name))
            except FileNotFoundError:
                pass
        _fsync_dir(self.path)

    def _indexes(self, but: str = "") -> list[str]:
        try:
            names = os.listdir(self.path)
        except OSError:
            return []
        return [n for n in names if (n.startswith("index.") or n.endswith(".tmp")) and n != but]

    def open_pack(self, write: bool) -> IO[bytes]:
        """The pack: emptied for writing, or as it is for reading."""
        if not write:
            return open(self.pack_path, "rb")  # noqa: SIM115 - the tracker keeps it open
        fd = os.open(
            self.pack_path,
            os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o600,
        )
        return os.fdopen(fd, "w+b")

    def write(
        self,
        root: str,
        base: dict[str, Base],
        *,
        complete: bool,
        partial: bool,
        started_ns: int,
        pack: IO[bytes] | None = None,
    ) -> None:
        """Write the index, then the manifest that vouches for it. `complete`: the pack
        (`pack`, fsynced here first) holds every byte the index points to."""
        pack_bytes = 0
        if complete:
            assert pack is not None
            pack.flush()
            os.fsync(pack.fileno())
            pack_bytes = os.fstat(pack.fileno()).st_size
        rows = [
            [
                rel,
                *b.key,
                None if b.digest is None or not complete else b.digest.hex(),
                b.offset if complete else -1,
                b.length if complete else 0,
            ]
            for rel, b in base.items()
        ]
        index = json.dumps({"format": FORMAT, "files": rows}, separators=(",", ":")).encode()
        digest = _digest(index)
        name = _index_name(digest)
        _write_atomic(self._file(name), index)
        manifest = {
            "format": FORMAT,
            "root": root,
            "complete": complete,
            "partial": partial,
            "started_ns": started_ns,
            "files": len(rows),
            "pack_bytes": pack_bytes,
            "index_digest": digest,
        }
        _write_atomic(self._file(MANIFEST), json.dumps(manifest, indent=1).encode())
        for old in self._indexes(but=name):  # indexes no manifest names any more
            try:
                os.unlink(self._file(old))
            except OSError:
                pass


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _index_name(digest: str) -> str:
    return f"index.{digest}.json"


def _relative(rel: object) -> bool:
    return (
        isinstance(rel, str)
        and bool(rel)
        and not rel.startswith("/")
        and "\0" not in rel
        and not any(part in ("", ".", "..") for part in rel.split("/"))
    )


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.path.dirname(path))


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
