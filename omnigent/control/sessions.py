"""Session records: created, read (in their public form), listed, deleted; and the
terminals handed from one session's runner to another session.

The public form (CONTRACT.md's session object) adds what is computed on read, so that
sessions stored before these fields existed answer the same: `agent_id` (a stable id of
the agent spec, equal for equal specs), `agent_name`, and `updated_at` (the last change;
the creation time for a session never changed since).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from omnigent.control.db import StoreThread
from omnigent.domain.pagination import check_limit, list_envelope
from omnigent.errors import SessionNotFound
from omnigent.ids import new_id
from omnigent.store import Store

LIVE = ("launching", "running")


def agent_id(agent: dict | None) -> str:
    canonical = json.dumps(agent or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "ag_" + hashlib.sha256(canonical.encode()).hexdigest()[:20]


def public_session(session: dict) -> dict:
    out = {k: v for k, v in session.items() if not k.startswith("_")}
    agent = session.get("agent") or {}
    out["agent_id"] = agent_id(agent)
    out["agent_name"] = agent.get("name")
    out["updated_at"] = session.get("updated_at") or session["created_at"]
    return out


class Sessions:
    def __init__(self, db: StoreThread, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    @property
    def store(self) -> Store:
        return self.db.store

    async def owned(self, user: str, session_id: str) -> dict:
        """The stored session (private fields included); SessionNotFound unless `user`'s."""
        session = await self.db.read(Store.get_session, session_id)
        if session is None or session["owner"] != user:
            raise SessionNotFound(f"session not found: {session_id}")
        return session

    async def owned_or_none(self, user: str, session_id: str) -> dict | None:
        """As `owned`, but None for a session that does not exist (delete is idempotent)."""
        session = await self.db.read(Store.get_session, session_id)
        if session is not None and session["owner"] != user:
            raise SessionNotFound(f"session not found: {session_id}")
        return session

    async def create(self, user: str, body: dict) -> dict:
        """A new idle session (stored; the public form is `get`'s)."""
        now = int(self.clock())
        session = {
            "id": new_id("conv"),
            "object": "session",
            "title": body.get("title"),
            "owner": user,
            "agent": body["agent"],
            "host_id": None,
            "runner_id": None,
            "workspace": None,
            "git_branch": None,
            "status": "idle",
            "created_at": now,
            "updated_at": now,
        }
        await self.db(self.store.put_session, session)
        return session

    async def remove(self, session_id: str) -> None:
        await self.db(self.store.delete_session, session_id)

    async def missing(self, session_ids: list[str]) -> list[str]:
        """Those of `session_ids` that name no session (a host's sweep of baselines)."""

        def find(store: Store) -> list[str]:
            return [sid for sid in session_ids if store.get_session(sid) is None]

        return await self.db.read(find)

    async def get(self, user: str, session_id: str) -> dict:
        return public_session(await self.owned(user, session_id))

    async def list(
        self, user: str, limit: int, after: str | None, before: str | None, order: str
    ) -> dict:
        check_limit(limit)
        items, more = await self.db.read(
            Store.session_page, user, limit, after, before, order == "desc"
        )
        return list_envelope([public_session(s) for s in items], more)

    async def terminals(self, session_id: str) -> dict:
        """The terminals the session's agent spec declares."""
        session = await self.db.read(Store.get_session, session_id)
        if session is None:
            raise SessionNotFound(f"session not found: {session_id}")
        return (session.get("agent") or {}).get("terminals") or {}

    # terminals moved between sessions ------------------------------------------------
    async def terminal_routes(self, user: str, session_id: str) -> dict:
        """Where a session's terminals run: its own runner (if live) and the runners of
        terminals other sessions handed to it (moves to runners gone are forgotten)."""
        session = await self.owned(user, session_id)
        own = None
        if session["runner_id"] and session["status"] == "running":
            own = {"runner_id": session["runner_id"], "host_id": session["host_id"]}
        reason = (
            "runner_not_bound"
            if not session["runner_id"]
            else None
            if own
            else "runner_unavailable"
        )
        moved = await self.db(_live_moves, self.store, session_id)
        return {"own": own, "reason": reason, "moved_in": moved}

    async def terminal_moved(
        self, source: str, target: str, terminal_id: str, runner_id: str
    ) -> None:
        def move(store: Store) -> None:
            target_session = store.get_session(target) or {}
            home = None if target_session.get("runner_id") == runner_id else runner_id
            store.move_terminal(source, target, terminal_id, home)

        await self.db(move, self.store)

    async def forget_terminal(self, session_id: str, terminal_id: str) -> None:
        await self.db(self.store.forget_move, session_id, terminal_id)


def _live_moves(store: Store, session_id: str) -> dict:
    moved = {}
    for tid, rid in store.moves_of(session_id).items():
        runner = store.get_runner(rid)
        if runner is not None and runner["status"] in LIVE:
            moved[tid] = {"runner_id": rid, "host_id": runner["host_id"]}
        else:
            store.forget_move(session_id, tid)
    return moved
