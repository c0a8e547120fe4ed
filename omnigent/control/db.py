"""Store calls off the event loop, reads beside writes, writes committed in groups.

The store is synchronous SQLite with fsync (synchronous=FULL): a commit blocks for a disk
flush, which a slow disk makes tens of milliseconds. So the control plane's event loop
never calls the store itself:

- Writes (`db(fn, *args)`: a Store method, or a function of several store calls that must
  not interleave with other writes) run on one writer thread, in the order they were
  made, each whole and atomic with respect to every other write (a read-then-write needs
  no lock of its own). The calls that queued while a commit was in flight are made
  together, in one transaction with one commit (`Store.group_commit`): a burst of N
  writes costs a few disk flushes, not N. Each call still has its own savepoint, result
  and exception; its future resolves only once the commit is on disk.
- Reads (`db.read(fn, *args)`: `fn(store, *args)`, e.g. `Store.get_session`) run on
  reader threads, each with its own connection (WAL: readers never wait for the writer),
  so they do not queue behind writes and their flushes. A read sees every write whose
  await returned before the read was made (its commit came first).

A private in-memory database cannot be opened twice: its reads go to the writer thread.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from omnigent.store import Store

T = TypeVar("T")

MAX_GROUP = 128  # writes in one commit at most (a commit holds the write lock)
READERS = 2


class StoreThread:
    def __init__(self, store: Store, readers: int = READERS) -> None:
        self.store = store
        self._writes: queue.SimpleQueue[tuple[Future, Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._writer.start()
        self._local = threading.local()
        self._reader_stores: list[Store] = []
        self._lock = threading.Lock()
        self._readers = (
            None
            if store.in_memory or readers < 1
            else ThreadPoolExecutor(max_workers=readers, thread_name_prefix="store-read")
        )
        self._closed = False

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the writer thread, in a group commit (see the docstring)."""
        if self._closed:
            raise RuntimeError("the store is closed")
        future: Future[T] = Future()
        self._writes.put((future, functools.partial(fn, *args)))
        return await asyncio.wrap_future(future)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(store, *args)` on a reader thread, with its own connection (`fn` reads
        only: the connection is query_only)."""
        if self._readers is None:
            return await self(fn, self.store, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, fn, args)

    def _read(self, fn: Callable[..., T], args: tuple) -> T:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.store.path, readonly=True)
            with self._lock:
                self._reader_stores.append(store)
        return fn(store, *args)

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            item = self._writes.get()
            group = []
            while item is not None:
                group.append(item)
                if len(group) >= MAX_GROUP:
                    break
                try:
                    item = self._writes.get_nowait()
                except queue.Empty:
                    break
            stop = item is None
            # calls whose caller gave up (cancelled) are not made
            group = [(f, call) for f, call in group if f.set_running_or_notify_cancel()]
            if not group:
                continue
            try:
                outcomes = self.store.group_commit([call for _, call in group])
            except BaseException as bug:  # noqa: BLE001 - the callers hear of it
                outcomes = [(None, bug)] * len(group)
            for (future, _), (result, error) in zip(group, outcomes, strict=True):
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)

    def close(self) -> None:
        """Finish the writes queued, then close every connection."""
        if self._closed:
            return
        self._closed = True
        self._writes.put(None)
        self._writer.join()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        for store in self._reader_stores:
            store.close()
        self.store.close()
