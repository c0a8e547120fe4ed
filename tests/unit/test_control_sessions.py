"""Sessions and runners (omnigent.control.sessions, .runners): the public session object
(agent_id, agent_name, updated_at), ownership, binding, acknowledgement, ends, moves."""

from __future__ import annotations

import pytest

from omnigent.control.runners import Runners
from omnigent.control.sessions import Sessions, agent_id
from omnigent.errors import (
    AlreadyBound,
    RunnerNotBound,
    RunnerNotFound,
    RunnerUnavailable,
    SessionNotFound,
)
from tests.unit.control_helpers import Clock, run, store_thread

AGENT = {"name": "coder", "terminals": {"shell": {"command": "bash", "args": ["-l"]}}}


@pytest.fixture
def db(tmp_path):
    db = store_thread(tmp_path)
    yield db
    db.close()


class Counts:
    def __init__(self) -> None:
        self.by_host: dict[str, int] = {}

    def __call__(self, host_id: str, delta: int) -> None:
        self.by_host[host_id] = self.by_host.get(host_id, 0) + delta


def parts(db, clock):
    sessions = Sessions(db, clock)
    counts = Counts()
    return sessions, Runners(db, sessions, clock, counts), counts


def info(runner_id: str, token: str) -> dict:
    return {
        "runner_id": runner_id,
        "binding_token": token,
        "host_id": "host_1",
        "started_at": 5,
        "node_id": "n1",
        "pid": 42,
        "cwd": "/w",
        "workspace": "/w",
        "git_branch": None,
    }


def test_agent_id_is_stable_for_equal_specs():
    same = {"terminals": {"shell": {"args": ["-l"], "command": "bash"}}, "name": "coder"}
    assert agent_id(AGENT) == agent_id(same)
    assert agent_id(AGENT).startswith("ag_")
    assert agent_id(AGENT) != agent_id({**AGENT, "name": "other"})


def test_public_session_object(db):
    async def scenario():
        clock = Clock(1000)
        sessions, _, _ = parts(db, clock)
        s = await sessions.create("alice", {"agent": AGENT, "title": "t"})
        got = await sessions.get("alice", s["id"])
        assert got["agent_id"] == agent_id(AGENT) and got["agent_name"] == "coder"
        assert got["created_at"] == got["updated_at"] == 1000
        assert got["status"] == "idle" and got["object"] == "session"
        other = await sessions.create("alice", {"agent": dict(AGENT)})
        listed = await sessions.list("alice", 20, None, None, "desc")
        assert [x["id"] for x in listed["data"]] == [other["id"], s["id"]]
        assert all(
            x["agent_id"] == agent_id(AGENT) and x["updated_at"] == 1000 for x in listed["data"]
        )
        assert (await sessions.list("bob", 20, None, None, "desc"))["data"] == []
        with pytest.raises(SessionNotFound):
            await sessions.get("bob", s["id"])  # someone else's: not found
        with pytest.raises(SessionNotFound):
            await sessions.get("alice", "conv_nope")

    run(scenario())


def test_a_session_stored_without_the_new_fields_still_answers(db):
    async def scenario():
        old = {
            "id": "conv_old",
            "object": "session",
            "title": None,
            "owner": "alice",
            "agent": AGENT,
            "host_id": None,
            "runner_id": None,
            "workspace": None,
            "git_branch": None,
            "status": "idle",
            "created_at": 77,
        }
        await db(db.store.put_session, old)
        got = await Sessions(db, Clock()).get("alice", "conv_old")
        assert got["agent_id"] == agent_id(AGENT) and got["agent_name"] == "coder"
        assert got["updated_at"] == 77

    run(scenario())


def test_bind_start_end_move_updated_at_and_counts(db):
    async def scenario():
        clock = Clock(1000)
        sessions, runners, counts = parts(db, clock)
        s = await sessions.create("alice", {"agent": AGENT})
        with pytest.raises(RunnerNotBound):
            await runners.of_session("alice", s["id"])
        clock.now = 1010
        await runners.bind(
            s["id"],
            "runner_1",
            "secret",
            {"host_id": "host_1", "workspace": "/w", "git_branch": None},
        )
        got = await sessions.get("alice", s["id"])
        assert got["status"] == "launching" and got["updated_at"] == 1010
        assert "_binding" not in got
        with pytest.raises(AlreadyBound):  # compare-and-set: one binding at a time
            await runners.bind(s["id"], "runner_2", "other", {"host_id": "host_1"})
        with pytest.raises(RunnerUnavailable):
            await runners.of_session("alice", s["id"])
        with pytest.raises(AlreadyBound):  # wrong binding token
            await runners.started(s["id"], info("runner_1", "forged"))
        clock.now = 1020
        runner = await runners.started(s["id"], info("runner_1", "secret"))
        assert runner["status"] == "running" and counts.by_host == {"host_1": 1}
        got = await sessions.get("alice", s["id"])
        assert got["status"] == "running" and got["updated_at"] == 1020
        assert await runners.of_session("alice", s["id"]) == {
            "runner_id": "runner_1",
            "host_id": "host_1",
        }
        assert (await runners.get("alice", "runner_1"))["pid"] == 42
        with pytest.raises(RunnerNotFound):
            await runners.get("bob", "runner_1")
        assert [r["runner_id"] for r in await runners.live()] == ["runner_1"]
        # a terminal handed to another session is found there while its runner lives
        t = await sessions.create("alice", {"agent": AGENT})
        await sessions.terminal_moved(s["id"], t["id"], "terminal_shell_k", "runner_1")
        routes = await sessions.terminal_routes("alice", t["id"])
        assert routes["own"] is None and routes["reason"] == "runner_not_bound"
        assert routes["moved_in"] == {
            "terminal_shell_k": {"runner_id": "runner_1", "host_id": "host_1"}
        }
        own = await sessions.terminal_routes("alice", s["id"])
        assert own["own"] == {"runner_id": "runner_1", "host_id": "host_1"}
        clock.now = 1030
        assert await runners.ended("runner_1", "runner_exited") is True
        assert await runners.ended("runner_1", "runner_failed") is False  # once
        assert counts.by_host == {"host_1": 0}
        got = await sessions.get("alice", s["id"])
        assert got["status"] == "runner_exited" and got["updated_at"] == 1030
        assert (await sessions.terminal_routes("alice", t["id"]))["moved_in"] == {}
        assert (await sessions.terminal_routes("alice", s["id"]))["reason"] == "runner_unavailable"
        clock.now = 1040
        await runners.unbind(s["id"], "runner_1")
        got = await sessions.get("alice", s["id"])
        assert got["status"] == "idle" and got["runner_id"] is None
        assert got["updated_at"] == 1040

    run(scenario())


def test_declared_terminals_and_removal(db):
    async def scenario():
        sessions = Sessions(db, Clock())
        s = await sessions.create("alice", {"agent": AGENT})
        assert await sessions.terminals(s["id"]) == AGENT["terminals"]
        with pytest.raises(SessionNotFound):
            await sessions.owned_or_none("bob", s["id"])
        assert (await sessions.owned_or_none("alice", s["id"]))["id"] == s["id"]
        await sessions.remove(s["id"])
        assert await sessions.owned_or_none("alice", s["id"]) is None
        with pytest.raises(SessionNotFound):
            await sessions.terminals(s["id"])

    run(scenario())


def test_missing_names_the_sessions_that_are_gone(db):
    """What a host's baseline sweep asks: which of the sessions it holds a baseline for
    no longer exist (any owner's)."""

    async def scenario():
        sessions = Sessions(db, Clock())
        kept = await sessions.create("alice", {"agent": AGENT})
        other = await sessions.create("bob", {"agent": AGENT})
        gone = await sessions.create("alice", {"agent": AGENT})
        await sessions.remove(gone["id"])
        ids = [kept["id"], gone["id"], other["id"], "conv_never"]
        assert await sessions.missing(ids) == [gone["id"], "conv_never"]
        assert await sessions.missing([]) == []

    run(scenario())


def test_a_runner_found_dead_after_a_restart_does_not_lower_its_hosts_count(db):
    """After a ControlActor restart, live runners are counted again as they are found
    (`reattached`); one whose actor is gone is ended without taking one off the count."""

    async def scenario():
        clock = Clock(1000)
        sessions, runners, counts = parts(db, clock)
        for n in (1, 2):
            s = await sessions.create("alice", {"agent": AGENT})
            await runners.bind(
                s["id"],
                f"runner_{n}",
                f"t{n}",
                {"host_id": "host_1", "workspace": "/w", "git_branch": None},
            )
            await runners.started(s["id"], info(f"runner_{n}", f"t{n}"))
        # a restart: a fresh count, runner_1 still alive, runner_2's actor gone
        _, after, recount = parts(db, clock)
        after.reattached(next(r for r in await after.live() if r["runner_id"] == "runner_1"))
        assert await after.ended("runner_2", "runner_failed", counted=False) is True
        assert recount.by_host == {"host_1": 1}

    run(scenario())
