"""Runners started ahead of need on a host, so that a launch only has to give one a
session (~ms) instead of starting a Ray worker process (~1 s here).

The pool keeps `low` runners ready, and more (up to `high`) while launches come in
bursts: one more for each launch in the last `window_s`. Runners beyond that are let go.
A pooled runner is checked alive before it is handed out; one that died is dropped.
Used by the HostActor (threaded), so everything here is guarded by one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import ray

log = logging.getLogger(__name__)

Handle = object  # a RunnerActor's ActorHandle
Start = Callable[[], tuple[str, Handle]]  # start a runner: (runner id, handle)


class RunnerPool:
    def __init__(
        self,
        start: Start,
        low: int = 1,
        high: int = 4,
        window_s: float = 60.0,
        ready_timeout_s: float = 60.0,
        check_timeout_s: float = 2.0,
        refill_delay_s: float = 1.0,
    ) -> None:
        self._start = start
        self.low, self.high = low, max(low, high)
        self.window_s = window_s
        self.ready_timeout_s = ready_timeout_s
        self.check_timeout_s = check_timeout_s
        self.refill_delay_s = refill_delay_s
        self._lock = threading.Lock()
        self._ready: deque[tuple[str, Handle]] = deque()
        self._starting = 0
        self._launches: deque[float] = deque()
        self._closed = False

    # sizing ---------------------------------------------------------------------------
    def target(self) -> int:
        """How many ready runners the pool aims at now."""
        if self.low == 0:
            return 0
        cutoff = time.monotonic() - self.window_s
        with self._lock:
            while self._launches and self._launches[0] < cutoff:
                self._launches.popleft()
            return min(self.high, self.low + len(self._launches))

    def fill(self) -> None:
        """Start runners until ready + starting reaches the target (returns at once; each
        runner is waited for in a thread of its own)."""
        want = self.target()
        with self._lock:
            if self._closed:
                return
            missing = want - len(self._ready) - self._starting
            self._starting += max(0, missing)
        for _ in range(missing):
            threading.Thread(target=self._start_one, name="runner-pool", daemon=True).start()

    def _start_one(self) -> None:
        handle = None
        try:
            runner_id, handle = self._start()
            ray.get(handle.ready.remote(), timeout=self.ready_timeout_s)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - a runner that cannot start is not pooled
            log.exception("a pooled runner did not start")
            if handle is not None:
                ray.kill(handle)
            with self._lock:
                self._starting -= 1
            return
        with self._lock:
            self._starting -= 1
            if not self._closed:
                self._ready.append((runner_id, handle))
                return
        ray.kill(handle)

    def trim(self) -> None:
        """Let go of ready runners beyond the target (the burst is over)."""
        want = self.target()
        extra = []
        with self._lock:
            while len(self._ready) > want:
                extra.append(self._ready.popleft())
        for _, handle in extra:
            ray.kill(handle)

    # launches -------------------------------------------------------------------------
    def take(self) -> tuple[str, Handle] | None:
        """A ready runner that answers, out of the pool (None if there is none); the pool
        then fills up again in the background."""
        with self._lock:
            self._launches.append(time.monotonic())
        try:
            while True:
                with self._lock:
                    if not self._ready:
                        return None
                    runner_id, handle = self._ready.popleft()
                try:
                    ray.get(handle.ready.remote(), timeout=self.check_timeout_s)  # type: ignore[attr-defined]
                    return runner_id, handle
                except Exception:  # noqa: BLE001 - dead or stuck: never handed out
                    log.warning("pooled runner %s did not answer; dropped", runner_id)
                    ray.kill(handle)
        finally:
            # Refilled a moment later: starting a Ray worker takes a core for ~1 s, which
            # the session just launched would otherwise compete with for its first calls.
            timer = threading.Timer(self.refill_delay_s, self.fill)
            timer.daemon = True
            timer.start()

    def put_back(self, runner_id: str, handle: Handle) -> None:
        """A runner taken for a launch that did not happen (its binding lost)."""
        with self._lock:
            if not self._closed:
                self._ready.appendleft((runner_id, handle))
                return
        ray.kill(handle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ready, self._ready = list(self._ready), deque()
        for _, handle in ready:
            ray.kill(handle)
