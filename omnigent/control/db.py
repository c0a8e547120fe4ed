"""Store calls off the event loop.

The store is synchronous SQLite with fsync (synchronous=FULL): a write blocks for a disk
flush. The control plane runs every store call on one dedicated thread, in the order they
were made, so that the event loop never waits on the disk and calls never interleave: a
function given to `StoreThread` runs whole, atomically with respect to every other store
call (a read-then-write needs no lock of its own).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from omnigent.store import Store

T = TypeVar("T")


class StoreThread:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the store thread (`fn` is a Store method, or a function of
        several store calls that must not interleave with others)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.store.close()
