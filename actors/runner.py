"""RunnerActor: one per runner, pinned to its host's node, working in the workspace.

It reports how it ends through `wait_exit`: the ControlActor keeps one such call pending
per live runner; it returns "runner_exited" after `stop()`, and raises if the actor dies
(crash, killed node), which the ControlActor records as "runner_failed".
"""

from __future__ import annotations

import asyncio
import os
import time

import ray


class RunnerActor:
    def __init__(
        self, runner_id: str, session_id: str, host_id: str, cwd: str, binding_token: str
    ) -> None:
        os.chdir(cwd)
        self.runner_id = runner_id
        self.session_id = session_id
        self.host_id = host_id
        self._binding_token = binding_token
        self.started_at = int(time.time())
        self._stopped = asyncio.Event()

    async def hello(self) -> dict:
        """The acknowledgement the host waits for: who I am, and my binding token."""
        return {**await self.info(), "binding_token": self._binding_token}

    async def info(self) -> dict:
        return {
            "runner_id": self.runner_id,
            "session_id": self.session_id,
            "host_id": self.host_id,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "started_at": self.started_at,
        }

    async def wait_exit(self) -> str:
        await self._stopped.wait()
        return "runner_exited"

    async def stop(self) -> None:
        """Stop the runner (idempotent): report the exit, then leave."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        asyncio.get_running_loop().call_later(0.5, _exit)


def _exit() -> None:
    ray.actor.exit_actor()
