"""Terminals on real ptys, driven on an asyncio loop as the runner's data path does."""

from __future__ import annotations

import asyncio
import time

import pytest

from omnigent.env.terminals import CLOSE_GONE, CLOSE_SLOW, Client, Terminals
from omnigent.errors import Conflict, InvalidRequest, NotFound

BASH = {
    "shell": {"command": "bash", "args": ["--norc", "--noprofile"]},
    "small": {"command": "bash", "args": ["--norc"], "scrollback": 1024},
}


class Recorder:
    def __init__(self, read_only=False, stalled=False):
        self.data = bytearray()
        self.closed: int | None = None
        self.stalled = stalled
        self.client = Client(self._send, self._close, self._pending, read_only)

    def _send(self, data):
        if self.stalled:
            self.queued = getattr(self, "queued", 0) + len(data)
        else:
            self.data += data

    def _close(self, code):
        self.closed = code

    def _pending(self):
        return getattr(self, "queued", 0)


async def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return False


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def terms(tmp_path):
    made = []

    def make(**kw):
        t = Terminals(str(tmp_path), "conv_a", BASH, **kw)
        made.append(t)
        return t

    yield make


def test_launch_is_idempotent_and_gated_on_the_spec(terms):
    async def main():
        t = terms()
        res, created = t.launch("shell", "k1")
        assert created and res["id"] == "terminal_shell_k1" and res["name"] == "shell"
        assert res["environment"] == "default" and res["session_id"] == "conv_a"
        again, created = t.launch("shell", "k1")
        assert not created and again["id"] == res["id"]
        other, created = t.launch("shell", "k2")
        assert created and other["id"] == "terminal_shell_k2"
        assert [r["id"] for r in t.list()] == ["terminal_shell_k1", "terminal_shell_k2"]
        with pytest.raises(InvalidRequest) as e:
            t.launch("nope", "k")
        assert e.value.code == "terminal_not_declared"
        with pytest.raises(InvalidRequest):
            t.launch("shell", "../x")
        t.close_all()

    run(main())


def test_echo_resize_read_only_and_two_clients(terms, tmp_path):
    async def main():
        t = terms()
        tid = t.launch("shell", "k")[0]["id"]
        a, b, ro = Recorder(), Recorder(), Recorder(read_only=True)
        for r in (a, b, ro):
            t.attach(tid, r.client)
        t.write(tid, a.client, b"echo hel''lo\n")
        assert await until(lambda: b"hello" in a.data and b"hello" in b.data)
        t.write(tid, ro.client, b"touch should_not_exist\n")
        t.resize(tid, 123, 45)
        t.write(tid, a.client, b"stty size\n")
        assert await until(lambda: b"45 123" in a.data)
        assert not (tmp_path / "should_not_exist").exists()
        t.close_all()

    run(main())


def test_replay_includes_output_made_while_detached(terms):
    async def main():
        t = terms()
        tid = t.launch("shell", "k")[0]["id"]
        first = Recorder()
        t.attach(tid, first.client)
        t.write(tid, first.client, b"echo one\n")
        assert await until(lambda: b"one" in first.data)
        t.detach(tid, first.client)
        t.write(tid, first.client, b"echo tw''o\n")
        await asyncio.sleep(0.3)
        later = Recorder()
        t.attach(tid, later.client)
        assert b"one" in later.data and b"two" in later.data
        t.close_all()

    run(main())


def test_scrollback_is_capped(terms):
    async def main():
        t = terms()
        tid = t.launch("small", "k")[0]["id"]
        r = Recorder()
        t.attach(tid, r.client)
        t.write(tid, r.client, b"head -c 5000 /dev/zero | tr '\\0' x; echo; echo E''ND\n")
        assert await until(lambda: b"END" in r.data)
        assert len(t.get_live(tid).scrollback) == 1024
        t.close_all()

    run(main())


def test_slow_client_is_dropped_without_stalling_others(terms):
    async def main():
        t = terms(client_budget=64 * 1024)
        tid = t.launch("shell", "k")[0]["id"]
        slow, fast = Recorder(stalled=True), Recorder()
        t.attach(tid, slow.client)
        t.attach(tid, fast.client)
        t.write(tid, fast.client, b"head -c 400000 /dev/zero | tr '\\0' y; echo; echo DO''NE\n")
        assert await until(lambda: b"DONE" in fast.data)
        assert slow.closed == CLOSE_SLOW
        t.close_all()

    run(main())


def test_exit_closes_clients_and_leaves_the_list(terms):
    async def main():
        t = terms()
        tid = t.launch("shell", "k")[0]["id"]
        r = Recorder()
        t.attach(tid, r.client)
        t.write(tid, r.client, b"exit\n")
        assert await until(lambda: r.closed == CLOSE_GONE)
        assert t.list() == []
        with pytest.raises(NotFound):
            t.get_live(tid)
        with pytest.raises(NotFound):
            t.close(tid)

    run(main())


def test_close_kills_the_whole_group(terms, tmp_path):
    async def main():
        t = terms()
        tid = t.launch("shell", "k")[0]["id"]
        r = Recorder()
        t.attach(tid, r.client)
        t.write(tid, r.client, b"sleep 300 & echo $! > child.pid\n")
        assert await until(
            lambda: (
                (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text().strip()
            )
        )
        child = int((tmp_path / "child.pid").read_text())
        deleted = t.close(tid)
        assert deleted == {"id": tid, "object": "session.resource.deleted", "deleted": True}
        assert r.closed == CLOSE_GONE

        def gone():
            try:
                with open(f"/proc/{child}/stat") as f:
                    return f.read().split()[2] == "Z"
            except FileNotFoundError:
                return True

        assert await until(gone)
        with pytest.raises(NotFound):
            t.close(tid)

    run(main())


def test_limit_and_transfer(terms):
    async def main():
        t = terms(max_terminals=2)
        t.launch("shell", "a")
        t.launch("shell", "b")
        with pytest.raises(Conflict) as e:
            t.launch("shell", "c")
        assert e.value.code == "too_many_terminals"
        moved = t.transfer("terminal_shell_a", "conv_a", "conv_b")
        assert moved["session_id"] == "conv_b"
        assert [r["id"] for r in t.list()] == ["terminal_shell_b"]
        assert [r["id"] for r in t.list("conv_b")] == ["terminal_shell_a"]
        with pytest.raises(NotFound):
            t.get_live("terminal_shell_a")
        t.close_all()

    run(main())


@pytest.mark.parametrize(
    "spec",
    [
        {"command": "ba\x00sh"},
        {"command": "bash", "args": ["-c", "echo a\x00b"]},
        {"command": "bash", "env": {"X": "a\x00b"}},
        {"command": "bash", "env": {"X\x00": "1"}},
        {"command": "bash", "env": {"A=B": "1"}},
        {"command": "bash", "env": {"": "1"}},
        {"command": "bash", "args": [1]},
    ],
)
def test_specs_exec_cannot_take_are_invalid_command_before_any_fork(tmp_path, spec, monkeypatch):
    import pty

    from omnigent.errors import InvalidCommand

    forks = []
    monkeypatch.setattr(
        pty, "fork", lambda: forks.append(1) or (_ for _ in ()).throw(AssertionError("forked"))
    )

    async def go():
        t = Terminals(str(tmp_path), "conv_a", {"bad": spec})
        with pytest.raises(InvalidCommand) as ei:
            t.launch("bad", "k")
        assert ei.value.code == "invalid_command" and isinstance(ei.value, InvalidRequest)
        assert t.list() == []

    run(go())
    assert forks == []
