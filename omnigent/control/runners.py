"""Runners: a session's binding (compare-and-set), the host's acknowledgement carrying
the runner's binding token, the runner records, and their ends."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from omnigent.control.db import StoreThread
from omnigent.control.sessions import LIVE, Sessions
from omnigent.errors import (
    AlreadyBound,
    RunnerNotBound,
    RunnerNotFound,
    RunnerUnavailable,
    SessionNotFound,
)
from omnigent.store import Store

RUNNER_FIELDS = (
    "runner_id",
    "session_id",
    "host_id",
    "status",
    "started_at",
    "node_id",
    "pid",
    "cwd",
)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Runners:
    def __init__(
        self,
        db: StoreThread,
        sessions: Sessions,
        clock: Callable[[], float],
        count: Callable[[str, int], None],
    ) -> None:
        """`count(host_id, ±1)` is told each runner that starts and ends on a host."""
        self.db = db
        self.sessions = sessions
        self.clock = clock
        self.count = count

    @property
    def store(self) -> Store:
        return self.db.store

    async def live(self) -> list[dict]:
        return await self.db.read(Store.live_runners)

    async def bind(self, session_id: str, runner_id: str, binding_token: str, fields: dict) -> None:
        fields = {**fields, "_binding": _hash(binding_token), "updated_at": int(self.clock())}
        if await self.db(self.store.bind_runner, session_id, runner_id, fields) is None:
            raise AlreadyBound("the session already has a runner bound")

    async def unbind(self, session_id: str, runner_id: str) -> None:
        await self.db(
            self.store.update_session_if_runner,
            session_id,
            runner_id,
            {
                "runner_id": None,
                "host_id": None,
                "workspace": None,
                "git_branch": None,
                "status": "idle",
                "_binding": None,
                "updated_at": int(self.clock()),
            },
        )

    async def started(self, session_id: str, info: dict) -> dict:
        """The host acknowledged the launch; the runner presented its binding token.
        Returns the runner's record (now running)."""
        info = dict(info)
        token = info.pop("binding_token")
        now = int(self.clock())

        def record(store: Store) -> dict:
            session = store.get_session(session_id)
            if session is None:
                raise SessionNotFound(f"session not found: {session_id}")
            if session.get("_binding") != _hash(token):
                raise AlreadyBound("the runner's binding token does not match its session")
            runner = {
                "runner_id": info["runner_id"],
                "session_id": session_id,
                "owner": session["owner"],
                "host_id": info["host_id"],
                "status": "running",
                "started_at": info["started_at"],
                "node_id": info["node_id"],
                "pid": info["pid"],
                "cwd": info["cwd"],
            }
            store.put_runner(runner)
            store.update_session_if_runner(
                session_id,
                runner["runner_id"],
                {
                    "status": "running",
                    "workspace": info["workspace"],
                    "git_branch": info["git_branch"],
                    "updated_at": now,
                },
            )
            return runner

        runner = await self.db(record, self.store)
        self.count(runner["host_id"], +1)
        return runner

    def reattached(self, runner: dict) -> None:
        """A live runner found again after a restart."""
        self.count(runner["host_id"], +1)

    async def ended(self, runner_id: str, status: str, counted: bool = True) -> bool:
        """The runner exited (`runner_exited`) or died (`runner_failed`); False if it was
        not live (already ended). `counted=False`: it was never counted on its host (found
        dead after a restart, before `reattached`)."""
        now = int(self.clock())

        def end(store: Store) -> dict | None:
            runner = store.get_runner(runner_id)
            if runner is None or runner["status"] not in LIVE:
                return None
            runner["status"] = status
            store.put_runner(runner)
            store.update_session_if_runner(
                runner["session_id"], runner_id, {"status": status, "updated_at": now}
            )
            return runner

        runner = await self.db(end, self.store)
        if runner is None:
            return False
        if counted:
            self.count(runner["host_id"], -1)
        return True

    async def of_session(self, user: str, session_id: str) -> dict:
        """The live runner bound to a session the caller owns, for its resource routes."""
        session = await self.sessions.owned(user, session_id)
        if not session["runner_id"]:
            raise RunnerNotBound("the session has no runner bound; launch one first")
        if session["status"] != "running":
            raise RunnerUnavailable(f"the session's runner is not available ({session['status']})")
        return {"runner_id": session["runner_id"], "host_id": session["host_id"]}

    async def get(self, user: str, runner_id: str) -> dict:
        runner = await self.db.read(Store.get_runner, runner_id)
        if runner is None or runner["owner"] != user:
            raise RunnerNotFound(f"runner not found: {runner_id}")
        return {k: runner[k] for k in RUNNER_FIELDS}
