"""Browse, read, write, edit and delete inside an environment root (runs on the host).

Every function takes the root (an absolute real path) and a client path relative to it,
checked by `paths.resolve`. Results are the contract's JSON objects. Writes are atomic: the
bytes go to a temporary file beside the target, are flushed to disk, and replace the
target with one rename, so a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import base64
import errno
import mimetypes
import os
import stat
import uuid

from omnigent.domain.pagination import LIMIT_MAX, LIMIT_MIN, list_envelope, page_of_keys
from omnigent.env.paths import NAME_MAX, inside, resolve, shorten
from omnigent.errors import (
    AmbiguousMatch,
    DirectoryNotEmpty,
    HostIOError,
    InvalidEdit,
    InvalidPath,
    InvalidRequest,
    IsADirectory,
    NotADirectory,
    NotAFile,
    NotText,
    PathNotFound,
    TextNotFound,
)

READ_CAP = 1024 * 1024  # bytes of content a read returns inline; the rest is `truncated`
ENTRY = "session.environment.filesystem.entry"


def _kind(st: os.stat_result | None) -> tuple[str, int | None]:
    if st is None:
        return "other", None
    if stat.S_ISDIR(st.st_mode):
        return "directory", None
    if stat.S_ISREG(st.st_mode):
        return "file", st.st_size
    return "other", None


def entry(root: str, rel: str, real: str | None = None) -> dict | None:
    """A filesystem entry; None if it vanished or is a dangling symlink. A symlink whose
    target leaves the root is shown as `other` with the link's own time, nothing of the
    target's."""
    path = os.path.join(root, rel)
    try:
        lst = os.lstat(path)
        if stat.S_ISLNK(lst.st_mode):
            target = real or os.path.realpath(path)
            if not inside(root, target):
                return _entry_dict(rel, "other", None, int(lst.st_mtime))
            st = os.stat(target)
        else:
            st = lst
    except FileNotFoundError:
        return None
    except OSError:
        return _entry_dict(rel, "other", None, None)
    kind, size = _kind(st)
    return _entry_dict(rel, kind, size, int(st.st_mtime))


def _entry_dict(rel: str, kind: str, size: int | None, mtime: int | None) -> dict:
    return {
        "id": rel,
        "object": ENTRY,
        "name": rel.rsplit("/", 1)[-1],
        "path": rel,
        "type": kind,
        "bytes": size,
        "modified_at": mtime,
    }


def get(
    root: str,
    rel: str | None,
    *,
    limit: int = 20,
    after: str | None = None,
    before: str | None = None,
    order: str = "desc",
    cap: int = READ_CAP,
) -> dict:
    """A directory's listing or a file's content, whichever the path names."""
    norm, real = resolve(root, rel)
    try:
        is_dir = stat.S_ISDIR(os.stat(real).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        raise PathNotFound(f"no such file or directory: {norm or '.'}") from None
    except OSError as exc:
        raise _os_error(exc, norm or ".") from None
    if is_dir:
        return list_dir(root, norm, real, limit=limit, after=after, before=before, order=order)
    return read_file(norm, real, cap)


def list_dir(
    root: str,
    norm: str,
    real: str,
    *,
    limit: int,
    after: str | None,
    before: str | None,
    order: str,
) -> dict:
    """One page of a directory, sorted by name; only the page's entries are stat-ed."""
    if not LIMIT_MIN <= limit <= LIMIT_MAX:
        raise InvalidRequest(f"limit must be between {LIMIT_MIN} and {LIMIT_MAX}")
    try:
        names = os.listdir(real)
    except PermissionError:
        raise HostIOError(f"permission denied: {norm or '.'}") from None
    except OSError as exc:
        raise _os_error(exc, norm or ".", "list") from None
    prefix = norm + "/" if norm else ""
    keys = sorted((prefix + n for n in names), reverse=order == "desc")
    page = page_of_keys(
        keys,
        lambda key: entry(root, key),
        limit=limit,
        after=after,
        before=before,
        descending=order == "desc",
    )
    return list_envelope(page.items, page.has_more)


def read_file(norm: str, real: str, cap: int = READ_CAP) -> dict:
    with _open_regular(norm, real) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(cap + 1)
    truncated = len(data) > cap or size > cap
    data = data[:cap]
    text = decode_text(data, truncated)
    content_type = mimetypes.guess_type(norm)[0]
    body = {
        "object": "session.environment.filesystem.file_content",
        "path": norm,
        "bytes": size,
        "truncated": truncated,
    }
    if text is not None:
        body.update(content_type=content_type or "text/plain", encoding="utf-8", content=text)
    else:
        body.update(
            content_type=content_type or "application/octet-stream",
            encoding="base64",
            content=base64.b64encode(data).decode(),
        )
    return body


def decode_text(data: bytes, cut: bool = False) -> str | None:
    """UTF-8 text without NUL bytes, else None (binary). A multi-byte character split by
    a cut at the end is dropped."""
    if b"\x00" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        if cut and exc.reason == "unexpected end of data":
            try:
                return data[: exc.start].decode()
            except UnicodeDecodeError:
                return None
        return None


class _open_regular:
    """Open a regular file for reading; never blocks on a FIFO, never follows a symlink
    swapped in after the check."""

    def __init__(self, norm: str, real: str) -> None:
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(f"no such file: {norm}") from None
        except OSError as exc:
            raise _os_error(exc, norm) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotAFile(f"not a regular file: {norm}")
        self.file = os.fdopen(fd, "rb")

    def __enter__(self):
        return self.file

    def __exit__(self, *exc) -> None:
        self.file.close()


def write_file(root: str, rel: str | None, data: bytes) -> dict:
    norm, real = resolve(root, rel)
    if not norm:
        raise InvalidPath("cannot write the environment root")
    created = not os.path.lexists(real)
    parent = os.path.dirname(real)
    try:
        makedirs(parent)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectory(f"a parent of {norm} is not a directory") from None
    except OSError as exc:
        raise _os_error(exc, norm, "create the parents of") from None
    if not inside(root, os.path.realpath(parent)):  # a parent swapped for a symlink meanwhile
        raise InvalidPath(f"path leaves the environment root: {norm}")
    atomic_write(real, data, norm)
    return {
        "object": "session.environment.filesystem.write_result",
        "operation": "created" if created else "updated",
        "path": norm,
        "created": created,
        "bytes_written": len(data),
        "entry": entry(root, norm),
    }


def atomic_write(real: str, data: bytes, norm: str) -> None:
    """Replace `real` with `data` in one rename, keeping an existing file's mode."""
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _os_error(exc, norm) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectory(f"is a directory: {norm}")
    mode = stat.S_IMODE(st.st_mode) if st is not None else None
    tmp = os.path.join(os.path.dirname(real), _temp_name(os.path.basename(real)))
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if mode is not None:
                os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, real)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _os_error(exc, norm, "write") from None


def _temp_name(name: str) -> str:
    """`.name.<12 hex>.tmp`, the name cut (at a character) so that the whole stays within
    NAME_MAX even when `name` is at the limit itself."""
    suffix = f".{uuid.uuid4().hex[:12]}.tmp"
    room = NAME_MAX - 1 - len(suffix)
    data = os.fsencode(name)
    if len(data) > room:
        name = data[:room].decode("utf-8", "ignore")  # a character cut in two is dropped
    return f".{name}{suffix}"


def makedirs(path: str) -> None:
    """`os.makedirs(path, exist_ok=True)` without its recursion: a path of a few thousand
    segments (well within PATH_MAX) would otherwise hit the interpreter's recursion limit."""
    missing = []
    while True:
        try:
            os.mkdir(path)
            break
        except FileNotFoundError:
            head = os.path.dirname(path)
            if head == path:
                raise
            missing.append(path)
            path = head
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            break
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:  # made meanwhile by someone else: fine if a directory
            if not os.path.isdir(path):
                raise


def _os_error(exc: OSError, norm: str, doing: str = "use") -> Exception:
    """A symlink loop or a name too long is the client's path's fault (400); anything
    else is the host's (502)."""
    if exc.errno == errno.ELOOP:
        return InvalidPath(f"too many levels of symbolic links: {shorten(norm)}")
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidPath(f"path too long: {shorten(norm)}")
    return HostIOError(f"cannot {doing} {shorten(norm)}: {exc.strerror}")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def edit_file(root: str, rel: str | None, old_text: str, new_text: str) -> dict:
    """Replace exactly one occurrence of `old_text`; otherwise change nothing."""
    if not old_text:
        raise InvalidEdit("old_text must not be empty")
    norm, real = resolve(root, rel)
    with _open_regular(norm, real) as f:
        data = f.read()
    text = decode_text(data)
    if text is None:
        raise NotText(f"not a UTF-8 text file: {norm}")
    first = text.find(old_text)
    if first < 0:
        raise TextNotFound(f"old_text not found in {norm}")
    if text.find(old_text, first + 1) >= 0:  # overlapping occurrences count too
        raise AmbiguousMatch(f"old_text occurs more than once in {norm}; make it unique")
    new = text.replace(old_text, new_text, 1).encode()
    atomic_write(real, new, norm)
    return {
        "object": "session.environment.filesystem.edit_result",
        "operation": "edited",
        "path": norm,
        "replacements": 1,
        "bytes_before": len(data),
        "bytes_after": len(new),
        "entry": entry(root, norm),
    }


def delete_path(root: str, rel: str | None, recursive: bool = False) -> dict:
    """Delete a file, a symlink (itself, not its target) or a directory."""
    norm, _ = resolve(root, rel)
    if not norm:
        raise InvalidPath("cannot delete the environment root")
    parent_rel, _, name = norm.rpartition("/")
    _, parent = resolve(root, parent_rel)
    path = os.path.join(parent, name)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise PathNotFound(f"no such file or directory: {norm}") from None
    except OSError as exc:
        raise _os_error(exc, norm) from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        kind = "symlink" if stat.S_ISLNK(st.st_mode) else "file"
        size, count = (st.st_size if kind == "file" else 0), 1
        try:
            os.unlink(path)
        except OSError as exc:
            raise _os_error(exc, norm, "delete") from None
    else:
        kind = "directory"
        size, count = _tree_size(path)
        try:
            if recursive:
                _rmtree(path)
            else:
                os.rmdir(path)
        except OSError as exc:
            if not recursive and exc.errno in (39, 66):  # ENOTEMPTY
                raise DirectoryNotEmpty(
                    f"directory not empty: {norm} (use recursive=true)"
                ) from None
            raise _os_error(exc, norm, "delete") from None
    return {
        "object": "session.environment.filesystem.delete_result",
        "operation": "deleted",
        "path": norm,
        "deleted": True,
        "type": kind,
        "bytes_deleted": size,
        "entries_deleted": count,
    }


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _walk_fd(path: str, on_entry, on_dir_done=None) -> None:
    """Depth-first over the tree under the directory `path`, without recursion (a tree of
    thousands of levels would exceed the interpreter's limit, as os.walk and shutil.rmtree
    do in 3.11) and by file descriptors (no path grows with the depth, and a directory
    swapped for a symlink is never followed: O_NOFOLLOW). `on_entry(dir_fd, entry)` for each
    entry that is not a directory, `on_dir_done(dir_fd, name)` after a subdirectory's
    content is done. One descriptor (and scandir's copy) per level is open at a time."""
    top = os.open(path, _DIR_FLAGS)
    stack = [(top, "", os.scandir(top))]
    try:
        while stack:
            fd, _, entries = stack[-1]
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                    try:
                        stack.append((child, entry.name, os.scandir(child)))
                    except BaseException:
                        os.close(child)
                        raise
                    break
                on_entry(fd, entry)
            else:
                fd, name, entries = stack.pop()
                entries.close()
                os.close(fd)
                if stack and on_dir_done is not None:
                    on_dir_done(stack[-1][0], name)
    finally:
        for fd, _, entries in stack:
            entries.close()
            os.close(fd)


def _tree_size(path: str) -> tuple[int, int]:
    """(bytes of its files, entries counting itself) of a directory tree."""
    total = [0, 1]

    def on_entry(fd: int, entry: os.DirEntry) -> None:
        total[1] += 1
        try:
            if not entry.is_dir():  # a symlink to a directory has no size that counts
                total[0] += entry.stat(follow_symlinks=False).st_size
        except OSError:
            pass

    def on_dir_done(fd: int, name: str) -> None:
        total[1] += 1

    try:
        _walk_fd(path, on_entry, on_dir_done)
    except OSError:
        pass  # removed meanwhile, or unreadable: what was counted
    return total[0], total[1]


def _rmtree(path: str) -> None:
    """shutil.rmtree(path), iteratively (see _walk_fd). Raises OSError."""
    _walk_fd(
        path,
        lambda fd, entry: os.unlink(entry.name, dir_fd=fd),
        lambda fd, name: os.rmdir(name, dir_fd=fd),
    )
    os.rmdir(path)
