"""A version number that others follow by long-poll, and know they have seen.

The API's replicas each keep a copy of something the ControlActor owns (the host table,
which tokens are revoked, a session's files) and follow its version by long-poll. A
replica that asks again past version N has applied N. `settled` waits until every
follower has done so: a change that returns after it is seen by every replica, so a
client whose next request reaches another replica reads its own write.
"""

from __future__ import annotations

import asyncio
import time

# A follower that has not asked again this long after a change is taken for gone (a
# replica that died or was rolled forward) and no longer waited for. Long enough for a
# replica whose event loop is busy under load (~ms when idle).
SETTLE_TIMEOUT_S = 2.0


class Version:
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._changed = asyncio.Event()
        self._asked = asyncio.Event()
        self.followers: dict[str, int] = {}  # follower id -> the version it last knew

    def bump(self) -> None:
        self.set(self.value + 1)

    def set(self, value: int) -> None:
        if value == self.value:
            return
        self.value = value
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_past(self, known: int, wait_s: float, follower: str | None = None) -> int:
        """The version once it differs from `known` (or after `wait_s`, unchanged).
        `follower`: who asks (it has applied `known`)."""
        if follower is not None:
            self.followers[follower] = known
            self._asked.set()
            self._asked = asyncio.Event()
        if known == self.value:
            try:
                await asyncio.wait_for(self._changed.wait(), wait_s)
            except TimeoutError:
                pass
        return self.value

    def behind(self) -> list[str]:
        return [f for f, known in self.followers.items() if known != self.value]

    async def settled(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Until every follower knows the current version; one that does not within
        `timeout` is forgotten (it is followed again when it next asks)."""
        deadline = time.monotonic() + timeout
        while behind := self.behind():
            left = deadline - time.monotonic()
            if left <= 0:
                for follower in behind:
                    self.followers.pop(follower, None)
                return
            asked = self._asked
            try:
                await asyncio.wait_for(asked.wait(), left)
            except TimeoutError:
                pass
