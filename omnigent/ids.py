"""Opaque, prefixed, URL-safe ids that sort in creation order.

An id is `<prefix>_<12 hex digits of ms time><10 hex random>`. Because ids sort like
their creation time, a list sorted by id is sorted by age, and an id alone is a
keyset cursor that still works after its item was deleted.
"""

from __future__ import annotations

import secrets
import threading
import time

_lock = threading.Lock()
_last_ms = 0


def new_id(prefix: str) -> str:
    global _last_ms
    with _lock:
        ms = max(int(time.time() * 1000), _last_ms + 1)
        _last_ms = ms
    return f"{prefix}_{ms:012x}{secrets.token_hex(5)}"


def new_token() -> str:
    return "omg_" + secrets.token_urlsafe(32)
