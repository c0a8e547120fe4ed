"""StoreThread (omnigent/control/db.py) without Ray: reads beside writes on connections of
their own, writes committed in groups (each call atomic, with its own result or error,
durable once its await returns), one caller's writes made in its order."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from omnigent.control.db import StoreThread
from omnigent.store import Store
from tests.unit.control_helpers import run


def session(sid: str, **extra) -> dict:
    return {"id": sid, "owner": "alice", "status": "idle", "runner_id": None, **extra}


@pytest.fixture()
def path(tmp_path) -> str:
    return str(tmp_path / "state" / "omnigent.db")


@pytest.fixture()
def db(path):
    db = StoreThread(Store(path))
    yield db
    db.close()


def blocker(db: StoreThread, seconds: float, started: threading.Event):
    """A write that holds the writer (a transaction open, as a slow disk's flush would)
    for `seconds`."""

    def slow(store: Store) -> str:
        store.put_session(session("conv_slow"))
        started.set()
        time.sleep(seconds)
        return "slow done"

    return db(slow, db.store)


def test_reads_do_not_wait_behind_a_slow_write(db):
    async def scenario():
        await db(db.store.put_session, session("conv_a"))
        started = threading.Event()
        slow = asyncio.ensure_future(blocker(db, 1.5, started))
        while not started.is_set():
            await asyncio.sleep(0.005)
        t0 = time.monotonic()
        got = [await db.read(Store.get_session, "conv_a") for _ in range(20)]
        took = time.monotonic() - t0
        assert not slow.done()  # the write is still in its transaction
        assert took < 0.5, f"20 reads took {took:.2f}s behind a 1.5 s write"
        assert got[0]["id"] == "conv_a"
        # the slow write's uncommitted row is not seen by a reader
        assert await db.read(Store.get_session, "conv_slow") is None
        assert await slow == "slow done"
        assert (await db.read(Store.get_session, "conv_slow"))["id"] == "conv_slow"

    run(scenario())


def test_a_read_sees_every_write_awaited_before_it(db):
    async def scenario():
        await db(db.store.put_session, session("conv_a", n=0))
        for n in range(1, 60):
            assert (await db.read(Store.get_session, "conv_a"))["n"] == n - 1
            await db(db.store.put_session, session("conv_a", n=n))
            assert (await db.read(Store.get_session, "conv_a"))["n"] == n
        # composite reads too (a function of the reader's store)
        both = await db.read(lambda s: (s.get_session("conv_a"), s.sessions_of("alice")))
        assert both[0]["n"] == 59 and len(both[1]) == 1

    run(scenario())


def test_reads_run_on_query_only_connections(db):
    async def scenario():
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only"):
            await db.read(Store.put_session, session("conv_x"))

    run(scenario())


def test_concurrent_writes_are_committed_together_and_durable(db, path, monkeypatch):
    groups: list[int] = []
    original = Store.group_commit

    def counting(store, calls):
        groups.append(len(calls))
        return original(store, calls)

    monkeypatch.setattr(Store, "group_commit", counting)

    async def scenario():
        started = threading.Event()
        slow = asyncio.ensure_future(blocker(db, 0.3, started))
        while not started.is_set():
            await asyncio.sleep(0.005)
        # 200 writes queue while the writer is busy: they go in a couple of commits
        done = await asyncio.gather(
            *(db(db.store.put_session, session(f"conv_{i:03d}")) for i in range(200))
        )
        assert done == [None] * 200
        await slow

    run(scenario())
    assert sum(groups) == 201
    assert len(groups) <= 4, groups  # the slow one alone, then 200 in groups of <= 128
    db.close()
    again = Store(path)  # durable: a fresh connection after close sees them all
    try:
        assert len(again.sessions_of("alice")) == 201
    finally:
        again.close()


def test_a_failing_call_in_a_group_fails_alone(db, path):
    def half_then_fail(store: Store) -> None:
        store.put_session(session("conv_half"))
        store.put_session(session("conv_half2"))
        raise ValueError("this call fails after writing")

    def bad_sql(store: Store) -> None:
        store.put_session(session("conv_bad"))
        store._db.execute("INSERT INTO nowhere VALUES (1)")

    async def scenario():
        started = threading.Event()
        slow = asyncio.ensure_future(blocker(db, 0.2, started))
        while not started.is_set():
            await asyncio.sleep(0.005)
        calls = [
            db(db.store.put_session, session("conv_1")),
            db(half_then_fail, db.store),
            db(db.store.put_session, session("conv_2")),
            db(bad_sql, db.store),
            db(db.store.bind_runner, "conv_1", "run_1", {}),
        ]
        out = await asyncio.gather(*calls, return_exceptions=True)
        await slow
        return out

    ok1, failed, ok2, bad, bound = run(scenario())
    assert ok1 is None and ok2 is None
    assert isinstance(failed, ValueError)
    assert isinstance(bad, sqlite3.OperationalError)
    assert bound["runner_id"] == "run_1"  # saw conv_1, made in the same group
    db.close()
    again = Store(path)
    try:
        ids = {s["id"] for s in again.sessions_of("alice")}
        assert ids == {"conv_slow", "conv_1", "conv_2"}  # the failed calls left nothing
        assert again.get_session("conv_1")["runner_id"] == "run_1"
    finally:
        again.close()


def test_one_callers_writes_are_made_in_its_order(db):
    made: list[int] = []

    def write(store: Store, i: int) -> int:
        made.append(i)
        store.put_session(session("conv_seq", n=i))
        return i

    async def caller():
        # awaited one by one, and also fired together: the queue keeps the order
        for i in range(20):
            assert await db(write, db.store, i) == i
        assert await asyncio.gather(*(db(write, db.store, i) for i in range(20, 300))) == list(
            range(20, 300)
        )

    run(caller())
    assert made == list(range(300))
    assert run(db.read(Store.get_session, "conv_seq"))["n"] == 299


def test_a_write_whose_caller_gave_up_is_not_made(db):
    async def scenario():
        started = threading.Event()
        slow = asyncio.ensure_future(blocker(db, 0.3, started))
        while not started.is_set():
            await asyncio.sleep(0.005)
        gone = asyncio.ensure_future(db(db.store.put_session, session("conv_gone")))
        kept = asyncio.ensure_future(db(db.store.put_session, session("conv_kept")))
        await asyncio.sleep(0.01)
        gone.cancel()
        await slow
        await kept
        assert await db.read(Store.get_session, "conv_gone") is None
        assert await db.read(Store.get_session, "conv_kept") is not None

    run(scenario())


def test_a_group_rolled_back_whole_fails_every_call_in_it(path):
    store = Store(path)
    try:

        def wreck(s: Store) -> None:  # as SQLite does on some errors (disk full, I/O)
            s._db.execute("ROLLBACK")
            raise sqlite3.OperationalError("disk I/O error")

        out = store.group_commit(
            [
                lambda: store.put_session(session("conv_1")),
                lambda: wreck(store),
                lambda: store.put_session(session("conv_2")),
            ]
        )
        assert isinstance(out[0][1], sqlite3.OperationalError)  # its commit was lost
        assert isinstance(out[1][1], sqlite3.OperationalError)
        assert out[2] == (None, None)  # made after, in a transaction of its own
        assert [s["id"] for s in store.sessions_of("alice")] == ["conv_2"]
    finally:
        store.close()


def test_store_writes_alone_are_transactions_of_their_own(path):
    """The CLI uses the Store without a StoreThread: each write commits by itself."""
    store = Store(path)
    other = Store(path, readonly=True)
    try:
        store.put_session(session("conv_1"))
        assert other.get_session("conv_1") is not None
        assert not store._db.in_transaction
        store._db.execute("DELETE FROM sessions")  # (autocommit)
        store._db.execute("INSERT INTO sessions VALUES ('conv_1', 'alice', '{\"id\": \"conv_1\"}')")
        with pytest.raises(KeyError):
            store.bind_runner("conv_1", "run_1", {})  # the stored session lacks runner_id
        assert not store._db.in_transaction
    finally:
        other.close()
        store.close()


def test_close_makes_the_writes_already_queued(path):
    db = StoreThread(Store(path))

    async def scenario():
        futures = [
            asyncio.ensure_future(db(db.store.put_session, session(f"conv_{i}"))) for i in range(50)
        ]
        await asyncio.sleep(0)  # queued
        await asyncio.to_thread(db.close)
        return await asyncio.gather(*futures)

    assert run(scenario()) == [None] * 50
    with pytest.raises(RuntimeError, match="closed"):
        run(db(db.store.put_session, session("conv_late")))
    again = Store(path)
    try:
        assert len(again.sessions_of("alice")) == 50
    finally:
        again.close()


def test_an_in_memory_store_reads_on_the_writer():
    db = StoreThread(Store(":memory:"))
    try:
        run(db(db.store.put_session, session("conv_1")))
        assert run(db.read(Store.get_session, "conv_1"))["id"] == "conv_1"
    finally:
        db.close()
