"""Small file helpers shared by the environment unit tests."""

from __future__ import annotations

import os


def put(root, rel, data=b"", mtime=None):
    """Write `data` (bytes or text) at root/rel, making parents; optionally set its mtime."""
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path
