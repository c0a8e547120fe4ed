"""A version number that others follow by long-poll."""

from __future__ import annotations

import asyncio


class Version:
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._changed = asyncio.Event()

    def bump(self) -> None:
        self.set(self.value + 1)

    def set(self, value: int) -> None:
        if value == self.value:
            return
        self.value = value
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_past(self, known: int, wait_s: float) -> int:
        """The version once it differs from `known` (or after `wait_s`, unchanged)."""
        if known == self.value:
            try:
                await asyncio.wait_for(self._changed.wait(), wait_s)
            except TimeoutError:
                pass
        return self.value
