"""The version the API replicas follow, and the wait until all of them have seen it."""

from __future__ import annotations

import asyncio
import time

from omnigent.control.watch import Version


def run(coro):
    return asyncio.run(coro)


def test_wait_past_returns_at_once_when_known_differs_and_on_change_otherwise():
    async def go():
        v = Version(3)
        assert await v.wait_past(2, 5) == 3
        waiter = asyncio.create_task(v.wait_past(3, 5))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        v.bump()
        assert await asyncio.wait_for(waiter, 1) == 4
        t0 = time.monotonic()
        assert await v.wait_past(4, 0.05) == 4  # unchanged: after wait_s
        assert time.monotonic() - t0 >= 0.04

    run(go())


async def follow(v: Version, name: str, lag: float, stop: asyncio.Event, seen: list) -> None:
    """A replica: apply what the long-poll brings (taking `lag`), then ask again."""
    known = -1
    while not stop.is_set():
        value = await v.wait_past(known, 0.2, name)
        if value != known:
            await asyncio.sleep(lag)
            seen.append((name, value))
            known = value


def test_settled_waits_until_every_follower_has_applied_the_change():
    async def go():
        v, stop = Version(), asyncio.Event()
        seen: list = []
        tasks = [
            asyncio.create_task(follow(v, "a", 0.0, stop, seen)),
            asyncio.create_task(follow(v, "b", 0.1, stop, seen)),  # a slow replica
        ]
        await asyncio.sleep(0.2)
        await v.settled()
        v.bump()
        t0 = time.monotonic()
        await v.settled()
        waited = time.monotonic() - t0
        assert ("a", 1) in seen and ("b", 1) in seen  # both applied it before it returned
        assert 0.08 <= waited < 0.4
        stop.set()
        await asyncio.gather(*tasks)

    run(go())


def test_a_follower_that_stops_asking_is_waited_for_once_then_forgotten():
    async def go():
        v, stop = Version(), asyncio.Event()
        seen: list = []
        alive = asyncio.create_task(follow(v, "alive", 0.0, stop, seen))
        await v.wait_past(-1, 0, "dead")  # asked once, never again
        v.bump()
        t0 = time.monotonic()
        await v.settled(timeout=0.3)
        assert 0.25 <= time.monotonic() - t0 < 1
        assert "dead" not in v.followers and "alive" in v.followers
        v.bump()
        t0 = time.monotonic()
        await v.settled(timeout=0.3)
        assert time.monotonic() - t0 < 0.2  # no longer waited for
        stop.set()
        await alive

    run(go())


def test_settled_with_no_followers_returns_at_once():
    async def go():
        v = Version()
        v.bump()
        t0 = time.monotonic()
        await v.settled()
        assert time.monotonic() - t0 < 0.05

    run(go())
