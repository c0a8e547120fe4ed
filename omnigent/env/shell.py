"""Run one shell command on the host and capture its output: `run_shell`.

The rules:

- The command runs as `/bin/bash -c command` (`/bin/sh -c` where there is no bash), in `cwd`,
  with stdin from /dev/null, in its own session and so its own process group, whose id is the
  shell's pid. `env`, if given, is the child's whole environment; by default it inherits ours.
- stdout and stderr are captured separately and read concurrently as they arrive. Each keeps
  at most `cap` bytes; past that, reading goes on and the rest is thrown away (the child never
  blocks on a full pipe) and `truncated` becomes True. Both are decoded as UTF-8 with
  errors="replace" (a character split at the cap becomes U+FFFD).
- `exit_code` is the shell's return code; a shell killed by signal N gives 128 + N, as shells
  report it (`kill -9 $$` gives 137).
- Timeout: if the shell has not exited within `timeout` seconds, the whole process group is
  killed with SIGKILL (children and grandchildren too), the output read so far is returned,
  `timed_out` is True and `exit_code` None.
- After the shell exits, the pipes are drained until EOF, for at most `grace` seconds: a
  background child that inherited stdout or stderr (`sleep 1000 &`) keeps them open, so if EOF
  has not come by then, the process group is killed and what was read is returned. Children
  whose output goes elsewhere (`nohup x >/dev/null 2>&1 &`) don't hold the pipes and are left
  running.
- If the calling task is cancelled, the process group is killed, the shell reaped and
  CancelledError re-raised.
- No zombies and no open fds are left: the shell is always reaped (through `Popen.poll`, so
  Popen's own bookkeeping agrees) before we return, and the pipes and the pidfd are closed.
  What it leaves behind (an orphan, once it exits) is reaped by omnigent.env.reaper where the
  runner is a subreaper; the shell's pid is registered there so that its status stays ours.
- A command holding a NUL byte is refused (InvalidCommand, 400): no argv can carry one.

How, and why not asyncio's subprocess machinery: `run_shell` runs in Ray actor processes,
whose event loop is uvloop (Ray installs uvloop's policy in its workers). There
`loop.subprocess_exec` spawns through libuv, which fork()s the whole, large worker process:
~20 ms per command instead of ~1, growing with the process size; and uvloop's policy has no
child watcher at all. So the loop is used only to wait for file descriptors, which works the
same on uvloop and on the default loop, in the main thread or any other:

- the shell is started with a plain `subprocess.Popen` (no `preexec_fn`, so CPython spawns
  with vfork: cost independent of our size),
- the two pipes are set non-blocking and read with `loop.add_reader`, 64 KiB at a time,
- its exit is learnt from a pidfd (`os.pidfd_open` + `loop.add_reader`: readable once the
  process has exited), after which it is reaped with `Popen.poll()`. Where there is no pidfd
  (kernel < 5.3), `Popen.poll()` is called every few milliseconds instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from typing import IO

from omnigent.env import reaper
from omnigent.errors import InvalidCommand

OUTPUT_CAP = 1024 * 1024  # bytes per stream

SHELL = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"

_CHUNK = 64 * 1024
_READS_PER_WAKEUP = 16  # then let the loop run (a `yes` must not starve the timeout)
_POLL_INTERVAL = 0.005  # seconds, only without pidfd


class _Capture:
    """Reads the pipes as they become readable: keeps the first `cap` bytes of each."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cap: int, pipes: list[IO[bytes]]) -> None:
        self.loop = loop
        self.cap = cap
        self.truncated = False
        self.eof: asyncio.Future[None] = loop.create_future()
        self.data: list[bytearray] = [bytearray() for _ in pipes]
        self.open: dict[int, tuple[IO[bytes], bytearray]] = {
            pipe.fileno(): (pipe, buf) for pipe, buf in zip(pipes, self.data, strict=True)
        }

    def start(self) -> None:
        for fd in self.open:
            os.set_blocking(fd, False)
            self.loop.add_reader(fd, self._readable, fd)

    def _readable(self, fd: int) -> None:
        buf = self.open[fd][1]
        for _ in range(_READS_PER_WAKEUP):
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""  # cannot happen on a pipe; treat as EOF rather than spin
            if not chunk:
                self._close(fd)
                if not self.open and not self.eof.done():
                    self.eof.set_result(None)
                return
            room = self.cap - len(buf)
            if len(chunk) > room:
                self.truncated = True
                chunk = chunk[:room]
            buf += chunk

    def _close(self, fd: int) -> None:
        pipe, _ = self.open.pop(fd)
        self.loop.remove_reader(fd)  # fine if it was never added
        pipe.close()

    def close(self) -> None:
        for fd in list(self.open):
            self._close(fd)


class _Exit:
    """`exited` is done once the shell has exited and been reaped (`proc.returncode` set)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, proc: subprocess.Popen) -> None:
        self.loop = loop
        self.proc = proc
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pidfd: int | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.watching = False  # `exited` will get done (unless close() comes first)

    def start(self) -> None:
        try:
            self.pidfd = os.pidfd_open(self.proc.pid)  # not reaped yet: the pid is still ours
        except (AttributeError, OSError):  # no pidfd here: poll
            self._poll()
        else:
            self.loop.add_reader(self.pidfd, self._pidfd_readable)
        self.watching = True

    def _pidfd_readable(self) -> None:
        self._close_pidfd()
        self._poll()

    def _poll(self) -> None:
        self.timer = None
        if self.proc.poll() is not None:
            if not self.exited.done():
                self.exited.set_result(None)
        else:
            self.timer = self.loop.call_later(_POLL_INTERVAL, self._poll)

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None

    def close(self, pgid: int) -> None:
        """Stop watching; if the shell was not reaped yet (cancelled while waiting for it after
        the kill), kill the group again and reap it here, blocking briefly."""
        self._close_pidfd()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.proc.returncode is None:
            _kill_group(pgid)
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:  # stuck in the kernel: Popen reaps it later
                pass


async def _within(fut: asyncio.Future[None], seconds: float) -> bool:
    """Whether `fut` is done within `seconds` (it is never cancelled)."""
    done, _ = await asyncio.wait({fut}, timeout=max(seconds, 0))
    return bool(done)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nobody left in the group (or nobody we may signal)


async def run_shell(
    command: str,
    cwd: str,
    timeout: float,
    *,
    cap: int = OUTPUT_CAP,
    env: dict[str, str] | None = None,
    grace: float = 0.2,
) -> dict:
    """-> {"exit_code": int | None, "stdout": str, "stderr": str, "timed_out": bool,
    "truncated": bool}

    See the module docstring for the rules. Raises OSError if the shell cannot be started
    (e.g. `cwd` does not exist).
    """
    if "\x00" in command:  # no argv can hold one: exec would refuse it
        raise InvalidCommand("command must not contain a NUL byte")
    loop = asyncio.get_running_loop()
    # Blocks only until the shell has exec'd (vfork): see the module docstring. Registered
    # with the orphan reaper, which must leave its exit status to Popen (omnigent.env.reaper).
    with reaper.spawning():
        proc = subprocess.Popen(  # noqa: ASYNC220
            [SHELL, "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        reaper.own(proc.pid)
    pgid = proc.pid  # the shell leads its own session and process group
    assert proc.stdout is not None and proc.stderr is not None
    capture = _Capture(loop, cap, [proc.stdout, proc.stderr])
    exit_ = _Exit(loop, proc)
    timed_out = False
    try:
        capture.start()
        exit_.start()
        if not await _within(exit_.exited, timeout):
            timed_out = True
            _kill_group(pgid)
            await exit_.exited
        if not await _within(capture.eof, grace):
            _kill_group(pgid)  # whatever in the group still holds our pipes
            await _within(capture.eof, grace)  # a holder outside the group: give up on it
    except BaseException:  # cancelled: kill the group, reap the shell, re-raise
        _kill_group(pgid)
        if exit_.watching:
            await exit_.exited
        raise
    finally:
        capture.close()
        exit_.close(pgid)  # reaps it here if that did not happen above
        if proc.returncode is not None:  # reaped: the pid is no longer ours (else Popen
            reaper.disown(proc.pid)  # still has to reap it, later, and it stays ours)

    returncode = proc.returncode
    if timed_out or returncode is None:
        exit_code = None
    else:
        exit_code = 128 - returncode if returncode < 0 else returncode
    stdout, stderr = capture.data
    return {
        "exit_code": exit_code,
        "stdout": stdout.decode("utf-8", errors="replace"),
        "stderr": stderr.decode("utf-8", errors="replace"),
        "timed_out": timed_out,
        "truncated": capture.truncated,
    }
