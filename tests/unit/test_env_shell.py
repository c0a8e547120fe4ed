"""Shell commands on real processes (omnigent.env.shell.run_shell).

Most tests run twice: on the default asyncio loop and on a uvloop loop (what Ray workers use).
"""

import asyncio
import errno
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from omnigent.env import shell
from omnigent.env.shell import OUTPUT_CAP, run_shell


@pytest.fixture(params=["asyncio", "uvloop"])
def new_loop(request):
    """The event loop factory a test runs on."""
    if request.param == "uvloop":
        return pytest.importorskip("uvloop").new_event_loop
    return asyncio.new_event_loop


def arun(coro, new_loop=asyncio.new_event_loop):
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(coro)


def run(cmd, cwd, timeout=10.0, new_loop=asyncio.new_event_loop, **kw):
    return arun(run_shell(cmd, str(cwd), timeout, **kw), new_loop)


def timed(cmd, cwd, timeout=10.0, new_loop=asyncio.new_event_loop, **kw):
    t0 = time.monotonic()
    res = run(cmd, cwd, timeout, new_loop, **kw)
    return res, time.monotonic() - t0


def fds():
    return sorted(os.listdir("/proc/self/fd"))


def zombie_children():
    me = str(os.getpid())
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[1] == me and fields[0] == "Z":
                found.append(p.name)
    return found


def state(pid):
    """The process's state letter from /proc, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid):
    return state(pid) not in (None, "Z")


def gone_within(pid, seconds=2.0):
    """Gone or a zombie (a killed orphan waits for init/the subreaper to reap it)."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def read_pid(path, seconds=5.0):
    deadline = time.monotonic() + seconds
    while True:
        text = path.read_text().strip() if path.exists() else ""
        if text.endswith("\n") or text.isdigit():
            return int(text)
        assert time.monotonic() < deadline, f"no pid in {path}"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def kill_leftovers(tmp_path):
    """Kill every process a test recorded in a *.pid file that is still a live sleep."""
    yield
    for f in tmp_path.glob("*.pid"):
        text = f.read_text().strip()
        if not text.isdigit():
            continue
        pid = int(text)
        try:
            if alive(pid) and b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass


def test_exit_code_and_separate_streams(new_loop, tmp_path):
    res = run("printf out; printf err >&2; exit 3", tmp_path, new_loop=new_loop)
    assert res == {
        "exit_code": 3,
        "stdout": "out",
        "stderr": "err",
        "timed_out": False,
        "truncated": False,
    }


def test_success(new_loop, tmp_path):
    assert run("echo hi", tmp_path, new_loop=new_loop) == {
        "exit_code": 0,
        "stdout": "hi\n",
        "stderr": "",
        "timed_out": False,
        "truncated": False,
    }


def test_cwd_is_honoured(new_loop, tmp_path):
    assert run("pwd -P", tmp_path, new_loop=new_loop)["stdout"] == os.path.realpath(tmp_path) + "\n"


def test_non_zero_exit(new_loop, tmp_path):
    assert run("false", tmp_path, new_loop=new_loop)["exit_code"] == 1
    assert run("ls /nonexistent-dir-xyz", tmp_path, new_loop=new_loop)["exit_code"] not in (0, None)


def test_killed_by_signal_is_128_plus_signal(new_loop, tmp_path):
    assert run("kill -9 $$", tmp_path, new_loop=new_loop)["exit_code"] == 137
    assert run("kill -TERM $$", tmp_path, new_loop=new_loop)["exit_code"] == 143


def test_stdin_is_dev_null(tmp_path):
    saved, (r, w) = os.dup(0), os.pipe()
    os.dup2(r, 0)  # our own stdin is an open pipe now: a child inheriting it would block in cat
    try:
        res, took = timed("readlink /proc/$$/fd/0; cat; echo end", tmp_path, timeout=2)
    finally:
        os.dup2(saved, 0)
        for fd in (saved, r, w):
            os.close(fd)
    assert res["stdout"] == "/dev/null\nend\n" and not res["timed_out"]
    assert took < 2


@pytest.mark.skipif(not os.path.exists("/bin/bash"), reason="no /bin/bash")
def test_runs_bash(tmp_path):
    assert run('[[ -n "$BASH_VERSION" ]] && echo bash', tmp_path)["stdout"] == "bash\n"


def test_big_output_capped_and_returns_promptly(new_loop, tmp_path):
    res, took = timed("head -c 5242880 /dev/zero | tr '\\0' a", tmp_path, new_loop=new_loop)
    assert res["exit_code"] == 0 and not res["timed_out"]
    assert res["truncated"] is True
    assert len(res["stdout"]) == OUTPUT_CAP and res["stdout"] == "a" * OUTPUT_CAP
    assert took < 5


def test_stderr_capped_independently(new_loop, tmp_path):
    cmd = "head -c 5000 /dev/zero | tr '\\0' b >&2; printf %1000s | tr ' ' c"
    res = run(cmd, tmp_path, cap=1000, new_loop=new_loop)
    assert res["stderr"] == "b" * 1000
    assert res["stdout"] == "c" * 1000
    assert res["truncated"] is True and res["exit_code"] == 0


def test_exactly_cap_bytes_is_not_truncated(new_loop, tmp_path):
    res = run("printf %1000s; printf %1000s >&2", tmp_path, cap=1000, new_loop=new_loop)
    assert len(res["stdout"]) == len(res["stderr"]) == 1000
    assert res["truncated"] is False


def test_timeout_kills_the_whole_group(new_loop, tmp_path):
    cmd = "(sleep 30 & echo $! > grandchild.pid; wait) & sleep 30 & echo $! > child.pid; sleep 30"
    res, took = timed(cmd, tmp_path, timeout=0.5, new_loop=new_loop)
    assert res["timed_out"] is True and res["exit_code"] is None
    assert took < 3
    for name in ("child.pid", "grandchild.pid"):
        assert gone_within(read_pid(tmp_path / name)), name


def test_timeout_kills_children_that_do_not_hold_the_pipes(new_loop, tmp_path):
    cmd = "nohup sleep 30 >/dev/null 2>&1 & echo $! > detached.pid; sleep 30"
    res, took = timed(cmd, tmp_path, timeout=0.5, new_loop=new_loop)
    assert res["timed_out"] is True and took < 3
    assert gone_within(read_pid(tmp_path / "detached.pid"))


def test_partial_output_before_timeout(new_loop, tmp_path):
    res = run("echo before; echo err >&2; sleep 30", tmp_path, timeout=0.5, new_loop=new_loop)
    assert res["timed_out"] is True and res["exit_code"] is None
    assert res["stdout"] == "before\n" and res["stderr"] == "err\n"


def test_background_child_holding_stdout_is_killed_after_grace(new_loop, tmp_path):
    res, took = timed("sleep 30 & echo $! > bg.pid; echo done", tmp_path, new_loop=new_loop)
    assert res == {
        "exit_code": 0,
        "stdout": "done\n",
        "stderr": "",
        "timed_out": False,
        "truncated": False,
    }
    assert took < 1
    assert gone_within(read_pid(tmp_path / "bg.pid"))


def test_background_child_holding_only_stderr_is_killed_after_grace(new_loop, tmp_path):
    res, took = timed("sleep 30 >/dev/null & echo $! > bg.pid; exit 4", tmp_path, new_loop=new_loop)
    assert res["exit_code"] == 4 and not res["timed_out"]
    assert took < 1
    assert gone_within(read_pid(tmp_path / "bg.pid"))


def test_detached_child_survives_normal_exit(new_loop, tmp_path):
    cmd = "nohup sleep 30 >/dev/null 2>&1 & echo $! > detached.pid"
    res, took = timed(cmd, tmp_path, new_loop=new_loop)
    assert res["exit_code"] == 0 and not res["timed_out"]
    assert took < 1
    pid = read_pid(tmp_path / "detached.pid")
    time.sleep(0.3)  # past the grace period
    assert alive(pid)  # the autouse fixture kills it


def test_from_a_loop_in_a_non_main_thread(new_loop, tmp_path):
    out = {}

    async def several():
        return await asyncio.gather(
            *(run_shell(f"echo {i}; exit {i}", str(tmp_path), 10) for i in range(5)),
            run_shell("kill -9 $$", str(tmp_path), 10),
            run_shell("sleep 30 & echo $! > t.pid; sleep 30", str(tmp_path), 0.3),
        )

    def body():
        try:
            out["res"] = arun(several(), new_loop)
        except BaseException as e:  # noqa: BLE001 - reported below
            out["err"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join(15)
    assert not t.is_alive()
    assert "err" not in out, out.get("err")
    res = out["res"]
    assert [(r["exit_code"], r["stdout"]) for r in res[:5]] == [(i, f"{i}\n") for i in range(5)]
    assert res[5]["exit_code"] == 137
    assert res[6]["timed_out"] is True
    assert gone_within(read_pid(tmp_path / "t.pid"))


def test_cancellation_kills_the_group(new_loop, tmp_path):
    async def main():
        task = asyncio.create_task(
            run_shell(
                "echo $$ > shell.pid; sleep 30 & echo $! > child.pid; sleep 30", str(tmp_path), 30
            )
        )
        await asyncio.sleep(0.3)
        assert (tmp_path / "child.pid").exists()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    t0 = time.monotonic()
    arun(main(), new_loop)
    assert time.monotonic() - t0 < 2
    for name in ("shell.pid", "child.pid"):
        assert gone_within(read_pid(tmp_path / name)), name


def test_unicode_round_trips(new_loop, tmp_path):
    res = run("printf 'héllo ✓ 日本\\n'; printf 'ошибка' >&2", tmp_path, new_loop=new_loop)
    assert res["stdout"] == "héllo ✓ 日本\n" and res["stderr"] == "ошибка"


def test_multibyte_char_cut_at_cap_becomes_replacement(tmp_path):
    res = run("printf 'aé'", tmp_path, cap=2)
    assert res["stdout"] == "a\ufffd" and res["truncated"] is True


def test_own_process_group_and_session(new_loop, tmp_path):
    out = run("echo $$; cut -d' ' -f5,6 /proc/$$/stat", tmp_path, new_loop=new_loop)[
        "stdout"
    ].split()
    shell, pgid, sid = map(int, out)
    assert pgid == shell and sid == shell
    assert pgid != os.getpgrp() and sid != os.getsid(0)


def test_env(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_SHELL_TEST", "inherited")
    assert run("echo $OMNI_SHELL_TEST", tmp_path)["stdout"] == "inherited\n"
    env = {"PATH": os.environ["PATH"], "ONLY": "this"}
    assert run('echo "$ONLY/$OMNI_SHELL_TEST"', tmp_path, env=env)["stdout"] == "this/\n"


def test_no_fds_or_zombies_left_behind(new_loop, tmp_path):
    async def many():
        cwd = str(tmp_path)
        await run_shell("true", cwd, 10)
        await run_shell("kill -9 $$", cwd, 10)
        await run_shell("sleep 30 & echo $! > a.pid; echo x", cwd, 10)
        await run_shell("sleep 30 & echo $! > b.pid; sleep 30", cwd, 0.2)
        await run_shell("head -c 3000000 /dev/zero", cwd, 10)
        task = asyncio.create_task(run_shell("sleep 30 & echo $! > c.pid; sleep 30", cwd, 30))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = fds()
    arun(many(), new_loop)
    assert fds() == before
    assert zombie_children() == []


def test_no_fds_leak_over_many_calls(new_loop, tmp_path):
    async def twenty():
        before = fds()  # the loop's own fds are open by now
        for i in range(20):
            res = await run_shell(f"echo {i}; echo e >&2; exit {i % 3}", str(tmp_path), 10)
            assert (res["exit_code"], res["stdout"]) == (i % 3, f"{i}\n")
        return before, fds()

    before, after = arun(twenty(), new_loop)
    assert after == before
    assert zombie_children() == []


def test_missing_cwd_raises_and_leaks_nothing(new_loop, tmp_path):
    before = fds()
    with pytest.raises(OSError):
        run("true", tmp_path / "missing", new_loop=new_loop)
    assert fds() == before
    assert zombie_children() == []


def test_endless_output_still_times_out(new_loop, tmp_path):
    res, took = timed("yes", tmp_path, timeout=0.5, new_loop=new_loop)
    assert res["timed_out"] is True and res["exit_code"] is None
    assert res["truncated"] is True and len(res["stdout"]) == OUTPUT_CAP
    assert took < 3


def test_cancelled_twice_still_kills_and_reaps(new_loop, tmp_path):
    async def main():
        task = asyncio.create_task(
            run_shell(
                "echo $$ > shell.pid; sleep 30 & echo $! > child.pid; sleep 30", str(tmp_path), 30
            )
        )
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.sleep(0)  # now in the cancellation handler, waiting for the shell
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = fds()
    arun(main(), new_loop)
    assert fds() == before
    assert zombie_children() == []
    for name in ("shell.pid", "child.pid"):
        assert gone_within(read_pid(tmp_path / name)), name


@pytest.mark.parametrize("missing", ["no-function", "ENOSYS"])
def test_without_pidfd_polls_for_exit(new_loop, tmp_path, monkeypatch, missing):
    if missing == "no-function":
        monkeypatch.delattr(shell.os, "pidfd_open", raising=False)
    else:

        def pidfd_open(pid, flags=0):
            raise OSError(errno.ENOSYS, "Function not implemented")

        monkeypatch.setattr(shell.os, "pidfd_open", pidfd_open)
    before = fds()
    assert run("printf out; exit 3", tmp_path, new_loop=new_loop)["exit_code"] == 3
    assert run("kill -9 $$", tmp_path, new_loop=new_loop)["exit_code"] == 137
    res, took = timed("sleep 30 & echo $! > bg.pid; echo done", tmp_path, new_loop=new_loop)
    assert res["exit_code"] == 0 and res["stdout"] == "done\n" and took < 1
    assert gone_within(read_pid(tmp_path / "bg.pid"))
    res, took = timed(
        "sleep 30 & echo $! > t.pid; sleep 30", tmp_path, timeout=0.3, new_loop=new_loop
    )
    assert res["timed_out"] is True and took < 2
    assert gone_within(read_pid(tmp_path / "t.pid"))
    assert fds() == before
    assert zombie_children() == []


def test_under_the_uvloop_policy_in_a_thread_like_a_ray_worker(tmp_path):
    """Ray installs uvloop's policy (no child watcher) and runs asyncio.run in a thread."""
    uvloop = pytest.importorskip("uvloop")
    out = {}

    async def both():
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        return await asyncio.gather(
            run_shell("echo hi; exit 5", str(tmp_path), 10),
            run_shell("sleep 30 & echo $! > t.pid; sleep 30", str(tmp_path), 0.3),
        )

    def body():
        try:
            out["res"] = asyncio.run(both())
        except BaseException as e:  # noqa: BLE001 - reported below
            out["err"] = e

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        t = threading.Thread(target=body)
        t.start()
        t.join(15)
    finally:
        asyncio.set_event_loop_policy(None)
    assert not t.is_alive()
    assert "err" not in out, out.get("err")
    res = out["res"]
    assert (res[0]["exit_code"], res[0]["stdout"]) == (5, "hi\n")
    assert res[1]["timed_out"] is True
    assert gone_within(read_pid(tmp_path / "t.pid"))


@pytest.mark.parametrize("cmd", ["echo a\x00b", "\x00", "true\x00"])
def test_nul_byte_is_invalid_command_and_starts_nothing(tmp_path, cmd, monkeypatch):
    from omnigent.errors import InvalidCommand, InvalidRequest

    started = []
    monkeypatch.setattr(shell.subprocess, "Popen", lambda *a, **k: started.append(a))
    with pytest.raises(InvalidCommand) as ei:
        run(cmd, tmp_path)
    assert ei.value.code == "invalid_command" and isinstance(ei.value, InvalidRequest)
    assert started == []


def test_the_shell_is_registered_with_the_reaper_until_reaped(new_loop, tmp_path):
    from omnigent.env import reaper

    seen = []
    res = run("echo $$; exit 4", tmp_path, new_loop=new_loop)
    pid = int(res["stdout"])
    assert res["exit_code"] == 4
    assert pid not in reaper.REAPER._own  # disowned once reaped
    original = reaper.REAPER.own
    try:
        reaper.REAPER.own = lambda p: (seen.append(p), original(p))
        res = run("echo $$", tmp_path, new_loop=new_loop)
    finally:
        del reaper.REAPER.own
    assert seen == [int(res["stdout"])] and not reaper.REAPER._own
