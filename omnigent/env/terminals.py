"""Terminals: real ptys on the host, in the environment root (runs in the RunnerActor).

A terminal is the agent spec's declared program (`command`, `args`, `env`) on a pty. Its
output is read as it comes (the event loop watches the pty), kept in a scrollback ring
(1 MiB unless the spec says otherwise) and fanned out to every attached client. Each
client has a budget of unsent bytes; one that stops reading is dropped (close 1013)
instead of holding up the terminal or the others. A new client first gets the
scrollback, so it sees the screen, then the live output.

When the program exits, clients are closed with 4404 and the terminal leaves the list.
Closing a terminal kills its whole process group. `(name, session_key)` is unique among
the live terminals of a session; launching it again returns the same terminal.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from omnigent.env import reaper
from omnigent.errors import (
    InvalidCommand,
    InvalidSessionKey,
    TerminalExists,
    TerminalNotDeclared,
    TerminalNotFound,
    TooManyTerminals,
)
from omnigent.wire import CLOSE_GONE, CLOSE_SLOW

SCROLLBACK = 1024 * 1024  # bytes of recent output replayed to a new client
CLIENT_BUDGET = 4 * 1024 * 1024  # unsent bytes a client may fall behind before it is dropped
MAX_TERMINALS = 16  # live terminals per runner
READ_SIZE = 64 * 1024
MAX_READS = 64  # reads gathered into one piece of output
_DEFAULT_SIGNALS = (
    signal.SIGPIPE,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGCHLD,
    signal.SIGXFSZ,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(eq=False)
class Client:
    """One attached connection: `send(bytes)` queues output, `close(code)` ends it."""

    send: Callable[[bytes], None]
    close: Callable[[int], None]
    pending: Callable[[], int]  # bytes queued and not yet written to the socket
    read_only: bool = False


@dataclass(eq=False)
class Terminal:
    id: str
    name: str
    session_key: str
    session_id: str
    pid: int
    fd: int
    scrollback_cap: int
    created_at: int
    scrollback: bytearray = field(default_factory=bytearray)
    clients: set = field(default_factory=set)

    def resource(self) -> dict:
        return {
            "id": self.id,
            "object": "session.resource",
            "type": "terminal",
            "session_id": self.session_id,
            "name": self.name,
            "environment": "default",
            "metadata": {
                "session_key": self.session_key,
                "pid": self.pid,
                "created_at": self.created_at,
            },
        }

    def remember(self, data: bytes) -> None:
        self.scrollback += data
        over = len(self.scrollback) - self.scrollback_cap
        if over > 0:
            del self.scrollback[:over]


def terminal_id(name: str, session_key: str) -> str:
    return f"terminal_{name}_{session_key}"


class Terminals:
    """The live terminals of one runner. All methods run on its data path's event loop."""

    def __init__(
        self,
        root: str,
        session_id: str,
        declared: dict[str, dict],
        *,
        max_terminals: int = MAX_TERMINALS,
        client_budget: int = CLIENT_BUDGET,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.env = env
        self.session_id = session_id
        self.declared = declared
        self.max_terminals = max_terminals
        self.client_budget = client_budget
        self._live: dict[tuple[str, str], Terminal] = {}  # (session id, terminal id)

    # lifecycle ----------------------------------------------------------------------
    def launch(
        self, name: str, session_key: str, session_id: str | None = None
    ) -> tuple[dict, bool]:
        """(resource, created): the live terminal of that name and key, or a new one."""
        sid = session_id or self.session_id
        spec = self.declared.get(name)
        if spec is None:
            raise TerminalNotDeclared(f"terminal {name!r} is not declared in the agent spec")
        if not _KEY.match(session_key):
            raise InvalidSessionKey("session_key must be 1-64 letters, digits, '_', '-' or '.'")
        tid = terminal_id(name, session_key)
        found = self._live.get((sid, tid))
        if found is not None:
            return found.resource(), False
        if len(self._live) >= self.max_terminals:
            raise TooManyTerminals(
                f"this session already runs {self.max_terminals} terminals; close one first"
            )
        term = self._spawn(tid, name, session_key, sid, spec)
        self._live[(sid, tid)] = term
        asyncio.get_running_loop().add_reader(term.fd, self._on_output, term)
        return term.resource(), True

    def _spawn(self, tid: str, name: str, key: str, sid: str, spec: dict) -> Terminal:
        import pty

        argv = [spec["command"], *spec.get("args", [])]
        base = os.environ if self.env is None else self.env
        env = {**base, "TERM": "xterm-256color", **spec.get("env", {})}
        check_spec(name, argv, spec.get("env", {}))
        with reaper.spawning():  # registered: the orphan reaper leaves its status to us
            pid, fd = pty.fork()
            if pid != 0:
                reaper.own(pid)
        if pid == 0:  # the child: its own session (pty.fork did setsid), in the root
            try:
                # The runner's process ignores or blocks some signals (SIGPIPE, SIGINT, …);
                # a terminal's programs must get them as usual (`yes | head`, Ctrl-C).
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                for sig in _DEFAULT_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                os.chdir(self.root)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        os.set_blocking(fd, False)
        return Terminal(
            tid, name, key, sid, pid, fd, spec.get("scrollback") or SCROLLBACK, int(time.time())
        )

    def _on_output(self, term: Terminal) -> None:
        # A pty hands out at most a few KiB per read: read what is there (up to a bound,
        # so a flood cannot hold the loop) and send it on as one piece.
        chunks: list[bytes] = []
        ended = False
        for _ in range(MAX_READS):
            try:
                data = os.read(term.fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError:  # EIO: the program and everything holding the pty is gone
                data = b""
            if not data:
                ended = True
                break
            chunks.append(data)
        if chunks:
            self._fan_out(term, b"".join(chunks) if len(chunks) > 1 else chunks[0])
        if ended:
            self._ended(term)

    def _fan_out(self, term: Terminal, data: bytes) -> None:
        term.remember(data)
        for client in list(term.clients):
            if client.pending() > self.client_budget:
                term.clients.discard(client)
                client.close(CLOSE_SLOW)
            else:
                client.send(data)

    def _ended(self, term: Terminal) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(term.fd)
        if self._live.get((term.session_id, term.id)) is term:
            del self._live[(term.session_id, term.id)]
        for client in list(term.clients):
            client.close(CLOSE_GONE)
        term.clients.clear()
        os.close(term.fd)
        _kill_group(term.pid)  # the pty is gone: nothing of the group may stay behind
        _reap_soon(loop, term.pid)

    def close(self, tid: str, session_id: str | None = None) -> dict:
        term = self.get_live(tid, session_id)
        _kill_group(term.pid)
        self._ended(term)
        return {"id": tid, "object": "session.resource.deleted", "deleted": True}

    def close_all(self) -> None:
        for term in list(self._live.values()):
            _kill_group(term.pid)
            self._ended(term)

    # reading ------------------------------------------------------------------------
    def get_live(self, tid: str, session_id: str | None = None) -> Terminal:
        term = self._live.get((session_id or self.session_id, tid))
        if term is None:
            raise TerminalNotFound(f"terminal not found: {tid}")
        return term

    def list(self, session_id: str | None = None) -> list[dict]:
        sid = session_id or self.session_id
        return [t.resource() for (owner, _), t in sorted(self._live.items()) if owner == sid]

    # attaching ----------------------------------------------------------------------
    def attach(self, tid: str, client: Client, session_id: str | None = None) -> None:
        """Replay the scrollback to `client`, then keep it posted."""
        term = self.get_live(tid, session_id)
        if term.scrollback:
            client.send(bytes(term.scrollback))
        term.clients.add(client)

    def _find(self, tid: str, session_id: str | None) -> Terminal | None:
        return self._live.get((session_id or self.session_id, tid))

    def detach(self, tid: str, client: Client, session_id: str | None = None) -> None:
        term = self._find(tid, session_id)
        if term is not None:
            term.clients.discard(client)

    def write(self, tid: str, client: Client, data: bytes, session_id: str | None = None) -> None:
        if client.read_only:
            return
        term = self._find(tid, session_id)
        if term is None:
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(term.fd, view) :]
            except BlockingIOError:
                break  # the program is not reading; input is dropped rather than queued
            except OSError:
                return

    def resize(self, tid: str, cols: int, rows: int, session_id: str | None = None) -> None:
        import fcntl
        import struct
        import termios

        term = self._find(tid, session_id)
        if term is None:
            return
        cols, rows = max(1, min(cols, 1000)), max(1, min(rows, 1000))
        fcntl.ioctl(term.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    # transfer -----------------------------------------------------------------------
    def transfer(self, tid: str, source: str, target: str) -> dict:
        """Hand a terminal to another session; it keeps running here (the server
        remembers where, when the target session has a runner of its own elsewhere)."""
        term = self.get_live(tid, source)
        if (target, tid) in self._live:
            raise TerminalExists(f"session {target} already has {tid}")
        del self._live[(source, tid)]
        term.session_id = target
        self._live[(target, tid)] = term
        return term.resource()


def check_spec(name: str, argv: list, env: dict) -> None:
    """Refuse (InvalidCommand, 400) what exec could not take, before forking: otherwise the
    child fails after the fork and the terminal just exits with 127."""
    for arg in argv:
        if not isinstance(arg, str):
            raise InvalidCommand(f"terminal {name!r}: command and args must be strings")
        if "\x00" in arg:
            raise InvalidCommand(f"terminal {name!r}: command and args must not contain a NUL byte")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidCommand(f"terminal {name!r}: env names and values must be strings")
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise InvalidCommand(
                f"terminal {name!r}: env names must be non-empty without "
                "'=' or NUL, values without NUL"
            )


def _kill_group(pid: int) -> None:
    """Kill the terminal's program and everything it started: its process group and, as
    an interactive shell puts each job in a group of its own, every process of the
    session it leads (pty.fork makes it a session leader)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for other in _session_members(pid):
        try:
            os.kill(other, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _session_members(sid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after "pid (comm)": state ppid pgrp session
            found.append(int(name))
    return found


def _reap_soon(loop: asyncio.AbstractEventLoop, pid: int, tries: int = 50) -> None:
    """Collect the exit status without blocking the loop (SIGKILL takes a moment)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        done = pid
    if done:
        reaper.disown(pid)  # reaped: the pid may be anyone's now
    elif tries > 0:
        loop.call_later(0.1, _reap_soon, loop, pid, tries - 1)
