"""Reap the orphans of the programs a runner starts: `start()` makes this process a child
subreaper (Linux) and runs a thread that collects the zombies nobody else will.

Why: a shell command's background child (`sleep 1 & exit 0`), a daemonising `(x &)`, or what
a terminal's program leaves behind outlives its parent and is re-parented to the nearest
subreaper, else to PID 1. In a container whose PID 1 is not an init, nobody reaps it and
it stays a zombie for ever. As a subreaper the runner inherits them, and must reap them.

What must never happen: reaping a child whose exit status someone in this process waits
for. The shell's `subprocess.Popen` (omnigent.env.shell) would then read ECHILD and report
exit code 0; a terminal's `waitpid` would find nothing. So a zombie child is reaped here
only if it is (a) not one of the pids that our own code started and has not reaped yet,
and (b) not in this process's own session.

(a) is the rule; `spawning()` closes its race. The starters (shell.py, terminals.py) fork
while holding `spawning()` and register the pid (`own`) before they let go; they `disown`
it only after they have reaped it. The reaper looks and reaps while holding the same lock.
So a child that dies at once, before its pid is registered, cannot be taken for an orphan:
while it is unregistered the reaper cannot look. A pid can only be reused after it was
reaped; our starter disowns after reaping, so at worst a new orphan with a reused pid is
left for the next tick (a short leak, never a stolen status).

(b) is a guard for children started by code that does not register (a library's
`subprocess.run`): those stay in our session, whereas everything a runner starts gets a
session of its own (start_new_session, pty.fork's setsid), and so do their orphans unless
they call setsid themselves. An orphan that stays in our session is left alone (it could
only come from such an unregistered child, whose descendants we know nothing about).

How it finds them: `waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)` peeks (one syscall, reaps
nothing) whether any child is waitable at all; only then are the children listed
(/proc/self/task/*/children, else a scan of /proc) and their zombies checked one by one
and reaped with `waitpid(pid, WNOHANG)`. A periodic tick (0.25 s), not SIGCHLD: a Python
signal handler only runs in the main thread, which in a Ray worker sits in the core
worker's C++ loop, and Ray's own handlers are not ours to replace; and sigwait would need
the signal blocked in every thread. An orphan's zombie thus lives at most a tick.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
TICK = 0.25  # seconds between looks


def set_subreaper() -> bool:
    """Make this process a child subreaper; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def is_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    flag = ctypes.c_int(0)
    return libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and bool(flag.value)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode(), int(fields[1]), int(fields[3])  # state ppid pgrp session


def _children() -> set[int]:
    """The pids of this process's children (of all its threads)."""
    found: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
        for tid in tasks:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                found.update(int(p) for p in f.read().split())
        return found
    except OSError:  # a thread that just ended, or no CONFIG_PROC_CHILDREN: scan /proc
        pass
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None and st[1] == me:
                found.add(int(name))
    return found


class Reaper:
    """The registry of our own children, and the thread that reaps the others."""

    def __init__(self, tick: float = TICK) -> None:
        self.tick = tick
        self._lock = threading.Lock()
        self._own: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reaped = 0  # orphans collected so far (for tests and curiosity)

    # the starters' side ------------------------------------------------------------
    @contextlib.contextmanager
    def spawning(self):
        """Hold this across the fork and `own(pid)`: see the module docstring."""
        with self._lock:
            yield

    def own(self, pid: int) -> None:
        self._own.add(pid)

    def disown(self, pid: int) -> None:
        """After the starter has reaped `pid` itself."""
        with self._lock:
            self._own.discard(pid)

    # the reaper's side ---------------------------------------------------------------
    def start(self) -> bool:
        """Become a subreaper and start reaping; False (and nothing started) where this
        process cannot be a subreaper. Idempotent."""
        if self._thread is not None:
            return True
        if not set_subreaper():
            return False
        self._thread = threading.Thread(target=self._run, name="orphan-reaper", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.reap_once()
            except Exception:  # noqa: BLE001 - never let the thread die: a bad /proc read, say
                pass

    def reap_once(self) -> list[int]:
        """Reap every zombie child that is an orphan we inherited; the pids reaped."""
        try:
            peek = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return []  # no children at all
        if peek is None:
            return []  # children, none of them waitable
        reaped = []
        my_session = os.getsid(0)
        with self._lock:
            for pid in _children():
                if pid in self._own:
                    continue
                st = _stat(pid)
                if st is None or st[0] != "Z" or st[2] == my_session:
                    continue
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if done:
                    reaped.append(pid)
        self.reaped += len(reaped)
        return reaped


REAPER = Reaper()


def start() -> bool:
    return REAPER.start()


def spawning():
    return REAPER.spawning()


def own(pid: int) -> None:
    REAPER.own(pid)


def disown(pid: int) -> None:
    REAPER.disown(pid)
