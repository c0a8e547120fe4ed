"""Shared by tests/unit/test_control_*.py: a real store on its thread, a clock set by hand."""

from __future__ import annotations

import asyncio

from omnigent.control.db import StoreThread
from omnigent.store import Store


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store_thread(tmp_path) -> StoreThread:
    return StoreThread(Store(str(tmp_path / "state" / "omnigent.db")))


def run(coro):
    return asyncio.run(coro)
