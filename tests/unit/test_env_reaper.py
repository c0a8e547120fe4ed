"""The orphan reaper (omnigent.env.reaper) on real processes.

Each test runs in a fresh Python subprocess that makes itself a child subreaper, so the
orphans it creates come back to it (and not to pytest); the script prints a JSON verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="child subreapers are Linux only"
)

PRELUDE = """
import asyncio, json, os, subprocess, sys, time
from omnigent.env import reaper, shell

def stat(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return fields[0].decode(), int(fields[1])

def zombie_children():
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = stat(int(name))
            if st and st[0] == "Z" and st[1] == me:
                found.append(int(name))
    return found

def gone_within(pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stat(pid) is None:
            return True
        time.sleep(0.02)
    return False

def run(cmd, timeout=10):
    return asyncio.run(shell.run_shell(cmd, os.getcwd(), timeout))
"""


def in_subreaper(body: str, tmp_path, timeout: float = 60) -> dict:
    script = PRELUDE + textwrap.dedent(body)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_set_subreaper_takes(tmp_path):
    got = in_subreaper(
        """
        before = reaper.is_subreaper()
        started = reaper.start()
        print(json.dumps({"before": before, "started": started,
                          "after": reaper.is_subreaper()}))
    """,
        tmp_path,
    )
    assert got == {"before": False, "started": True, "after": True}


def test_orphans_of_a_shell_are_reaped_and_its_exit_code_kept(tmp_path):
    got = in_subreaper(
        """
        reaper.REAPER.tick = 0.02
        assert reaper.start()
        # a background child, and a daemonising subshell's child: both orphans at once
        out = run("sleep 0.5 >/dev/null 2>&1 & echo $!; "
                  "(sleep 0.5 >/dev/null 2>&1 & echo $!); exit 3")
        orphans = [int(p) for p in out["stdout"].split()]
        parents = [stat(p)[1] for p in orphans]  # still running: re-parented to us
        gone = [gone_within(p, 5) for p in orphans]
        print(json.dumps({"exit_code": out["exit_code"], "mine": os.getpid(),
                          "parents": parents, "gone": gone,
                          "zombies": zombie_children(), "reaped": reaper.REAPER.reaped}))
    """,
        tmp_path,
    )
    assert got["exit_code"] == 3
    assert got["parents"] == [got["mine"], got["mine"]]
    assert got["gone"] == [True, True]
    assert got["zombies"] == [] and got["reaped"] == 2


def test_without_the_reaper_the_orphans_stay_zombies(tmp_path):
    """The control: a subreaper that does not reap keeps them (so the test above can fail)."""
    got = in_subreaper(
        """
        assert reaper.set_subreaper()
        out = run("sleep 0.2 >/dev/null 2>&1 & echo $!; exit 0")
        pid = int(out["stdout"])
        time.sleep(0.6)
        print(json.dumps({"state": stat(pid)[0]}))
        os.waitpid(pid, 0)
    """,
        tmp_path,
    )
    assert got["state"] == "Z"


def test_a_spinning_reaper_never_steals_a_status(tmp_path):
    """Shells that exit at once (often before Popen has returned) race a reaper that looks
    every millisecond; each must keep its own exit code. So must a child that some other
    code starts without registering it (it stays in our session)."""
    got = in_subreaper(
        """
        reaper.REAPER.tick = 0.0005
        assert reaper.start()
        codes = [run(f"exit {i % 50 + 1}")["exit_code"] for i in range(150)]
        wrong_shell = [(i, c) for i, c in enumerate(codes) if c != i % 50 + 1]
        wrong_other = []
        for i in range(100):
            p = subprocess.Popen(["/bin/sh", "-c", f"exit {i % 7 + 1}"])
            time.sleep(0.002)  # let it die and the reaper look at it
            if p.wait() != i % 7 + 1:
                wrong_other.append(i)
        print(json.dumps({"shell": wrong_shell, "other": wrong_other,
                          "reaped": reaper.REAPER.reaped}))
    """,
        tmp_path,
        timeout=120,
    )
    assert got == {"shell": [], "other": [], "reaped": 0}


def test_an_unregistered_child_of_its_own_session_is_taken_for_an_orphan(tmp_path):
    """What the registry is for: without `own`, a child with a session of its own is
    reaped by the reaper, and Popen then reads 0 (ECHILD)."""
    got = in_subreaper(
        """
        reaper.REAPER.tick = 0.01
        assert reaper.start()
        p = subprocess.Popen(["/bin/sh", "-c", "exit 9"], start_new_session=True)
        deadline = time.monotonic() + 5
        while reaper.REAPER.reaped == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        print(json.dumps({"reaped": reaper.REAPER.reaped, "code": p.wait()}))
    """,
        tmp_path,
    )
    assert got == {"reaped": 1, "code": 0}


def test_terminal_orphans_are_reaped(tmp_path):
    """A terminal's program leaves a background job behind; when the terminal ends, the
    job is killed and re-parented to us: reaped, and the terminal's own pid too."""
    got = in_subreaper(
        """
        from omnigent.env.terminals import Terminals
        reaper.REAPER.tick = 0.02
        assert reaper.start()
        spec = {"command": "/bin/sh",
                "args": ["-c", "sleep 30 >/dev/null 2>&1 & echo job=$!; sleep 0.3"]}

        async def main():
            terms = Terminals(os.getcwd(), "s", {"t": spec})
            res, _ = terms.launch("t", "k")
            term = terms.get_live(res["id"])
            deadline = time.monotonic() + 10
            while res["id"] in [t["id"] for t in terms.list()]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            job = int(bytes(term.scrollback).split(b"job=")[1].split()[0])

            async def gone(pid):  # the loop must run: the terminal reaps its pid on it
                deadline = time.monotonic() + 5
                while stat(pid) is not None and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                return stat(pid) is None

            gone, own_gone = await gone(job), await gone(term.pid)
            return {"job_gone": gone, "term_gone": own_gone,
                    "owned": sorted(reaper.REAPER._own)}

        got = asyncio.run(main())
        print(json.dumps({**got, "zombies": zombie_children()}))
    """,
        tmp_path,
    )
    assert got == {"job_gone": True, "term_gone": True, "owned": [], "zombies": []}
