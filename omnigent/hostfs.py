"""Directory listings for the host filesystem picker (runs on the host's node)."""

from __future__ import annotations

import errno
import os
import stat

from omnigent.domain.host_paths import expand_home, normalize_host_path
from omnigent.domain.pagination import LIMIT_MAX, LIMIT_MIN, list_envelope, page_of_keys
from omnigent.env.paths import check_length, shorten
from omnigent.errors import HostIOError, InvalidPath, InvalidRequest, NotFound


def _entry(directory: str, name: str) -> dict | None:
    path = os.path.join(directory, name)
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        return None  # dangling symlink, or removed while we looked
    except OSError:
        st = None
    if st is None:
        kind, size, mtime = "other", None, None
    elif stat.S_ISDIR(st.st_mode):
        kind, size, mtime = "directory", None, int(st.st_mtime)
    elif stat.S_ISREG(st.st_mode):
        kind, size, mtime = "file", st.st_size, int(st.st_mtime)
    else:
        kind, size, mtime = "other", None, int(st.st_mtime)
    return {"name": name, "path": path, "type": kind, "bytes": size, "modified_at": mtime}


def list_directory(
    raw_path: str | None, home: str, *, limit: int, after: str | None, before: str | None
) -> dict:
    if not LIMIT_MIN <= limit <= LIMIT_MAX:
        raise InvalidRequest(f"limit must be between {LIMIT_MIN} and {LIMIT_MAX}")
    path = expand_home(normalize_host_path(raw_path), home)
    if path.startswith("~"):
        path = os.path.expanduser(path)  # ~user: the host's own user database
        if path.startswith("~"):
            raise NotFound(f"no such user directory: {raw_path}")
    if not os.path.isabs(path):
        raise InvalidPath("path must be absolute or start with '~'")
    check_length(path)  # over PATH_MAX, or a name over NAME_MAX: the kernel would refuse it
    try:
        names = os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no such directory on the host: {shorten(path)}") from None
    except PermissionError:
        raise HostIOError(f"permission denied: {path}") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG):  # the caller's path: 400
            raise InvalidPath(f"cannot list {shorten(path)}: {exc.strerror}") from None
        raise HostIOError(f"cannot list {path}: {exc.strerror}") from None
    # Entries are pages of names in order, so only the names on the page (and one more,
    # for has_more) are stat-ed; a dangling symlink is skipped and the next name taken.
    keys = sorted(os.path.join(path, n) for n in names)
    page = page_of_keys(
        keys,
        lambda key: _entry(path, os.path.basename(key)),
        limit=limit,
        after=after,
        before=before,
    )
    return list_envelope(page.items, page.has_more, id_field="path")
