"""Find files by name or path in a session's environment (runs on the host).

`search` walks the tree under the environment root breadth-first with `os.scandir`,
never following a symlinked directory, so it never leaves the root. It reports files
only: regular files, and symlinks whose real path is a file inside the root.

`q` is a case-insensitive substring of the file's path relative to the root (its base
name is part of that path, so "main" finds "src/main.py", and so do "src/ma" and "src").
Directories named in `always_pruned` are never entered; directories matching `exclude`
are pruned; files matching `exclude` are skipped; with `include`, files must match it.

Every directory entry looked at counts against `budget`; when it runs out the walk stops
and the answer says `truncated`. Only the files on the returned page are stat-ed.
"""

from __future__ import annotations

import os
import stat as _stat
from collections import deque
from operator import itemgetter

from omnigent.domain.pagination import list_envelope
from omnigent.env.globs import GlobSet, split_globs
from omnigent.errors import InvalidQuery, InvalidRequest

SCAN_BUDGET = 200_000  # entries looked at before giving up -> truncated

ENTRY_OBJECT = "session.environment.filesystem.entry"


def _entry(relpath: str, name: str, st: os.stat_result) -> dict:
    return {
        "id": relpath,
        "object": ENTRY_OBJECT,
        "name": name,
        "path": relpath,
        "type": "file",
        "bytes": st.st_size,
        "modified_at": int(st.st_mtime),
    }


def search(
    root: str,
    q: str,
    *,
    include: str | None = None,
    exclude: str | None = None,
    limit: int = 500,
    under: str = "",
    budget: int = SCAN_BUDGET,
    always_pruned: frozenset[str] = frozenset({".git"}),
) -> dict:
    """Files under `root`/`under` whose relative path contains `q`, sorted by path.

    `root` is an absolute, real directory; `under` a relative directory inside it
    (validated by the caller; "" is the root). Paths in the answer are relative to `root`.
    """
    if not q or not q.strip():
        raise InvalidQuery("q must not be blank")
    if limit < 1:
        raise InvalidRequest("limit must be at least 1")
    incl = GlobSet(split_globs(include))
    excl = GlobSet(split_globs(exclude))
    incl_match = incl.match if incl else None
    excl_match = excl.match if excl else None

    ql = q.casefold()
    q_has_slash = "/" in ql
    root_prefix = root if root.endswith(os.sep) else root + os.sep
    under = under.strip("/")
    start_rel = under + "/" if under else ""
    start_abs = os.path.join(root, under) if under else root

    # (relpath, name, DirEntry or stat_result of a symlink's target)
    found: list[tuple] = []
    found_append = found.append
    seen = 0
    truncated = False
    queue: deque[tuple[str, str]] = deque([(start_abs, start_rel)])
    pop = queue.popleft
    push = queue.append
    realpath = os.path.realpath
    os_stat = os.stat
    S_ISREG = _stat.S_ISREG

    while queue and not truncated:
        dir_abs, dir_rel = pop()
        dir_lower = dir_rel.casefold()
        everything = ql in dir_lower  # q is in the directory's path: every file matches
        try:
            with os.scandir(dir_abs) as it:
                for entry in it:
                    if seen >= budget:
                        truncated = True
                        break
                    seen += 1
                    name = entry.name
                    if entry.is_dir(follow_symlinks=False):
                        if name in always_pruned:
                            continue
                        rel = dir_rel + name
                        if excl_match is not None and excl_match(rel):
                            continue
                        push((entry.path, rel + "/"))
                        continue
                    if not everything:
                        name_lower = name.casefold()
                        if ql not in name_lower and not (
                            q_has_slash and ql in dir_lower + name_lower
                        ):
                            continue
                    target: os.DirEntry[str] | os.stat_result = entry
                    if not entry.is_file(follow_symlinks=False):
                        if not entry.is_symlink():
                            continue  # fifo, socket, device...
                        real = realpath(entry.path)
                        if not real.startswith(root_prefix):
                            continue  # points outside the root (or at the root itself)
                        try:
                            target = os_stat(real)
                        except OSError:
                            continue  # dangling, or a loop
                        if not S_ISREG(target.st_mode):
                            continue  # a symlinked directory is not a file
                    rel = dir_rel + name
                    if excl_match is not None and excl_match(rel):
                        continue
                    if incl_match is not None and not incl_match(rel):
                        continue
                    found_append((rel, name, target))
        except OSError:
            continue  # unreadable, or removed while we walked: skipped

    found.sort(key=itemgetter(0))
    data: list[dict] = []
    has_more = False
    for rel, name, target in found:
        if isinstance(target, os.stat_result):
            st = target
        else:
            try:
                st = target.stat()
            except OSError:
                continue  # removed between scandir and stat
        if len(data) == limit:
            has_more = True
            break
        data.append(_entry(rel, name, st))
    envelope = list_envelope(data, has_more, id_field="id")
    envelope["truncated"] = truncated
    return envelope
