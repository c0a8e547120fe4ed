"""Rules for paths a client asks a host to browse.

The route gives what follows `/filesystem/`; the contract says it is absolute (the server
puts the leading `/` back) unless it starts with `~`, which the host expands itself.
"""

from __future__ import annotations

import posixpath

from omnigent.errors import InvalidPath


def normalize_host_path(raw: str | None) -> str:
    """The path the host should list, before `~` expansion. Raises InvalidPath."""
    if raw is None or raw == "":
        return "~"
    if "\x00" in raw:
        raise InvalidPath("path must not contain a NUL byte")
    if raw.startswith("~"):
        path = raw
    else:
        path = "/" + raw.lstrip("/")
    if ".." in path.split("/"):
        raise InvalidPath("path must not contain '..' segments")
    return path


def expand_home(path: str, home: str) -> str:
    """Expand a leading `~` or `~/` against the host daemon's home directory.

    `~user` forms are left for the host's own user database (os.path.expanduser).
    """
    if path == "~" or path.startswith("~/"):
        path = home.rstrip("/") + path[1:] if home != "/" else path[1:] or "/"
    return posixpath.normpath(path) if path.startswith("/") else path
