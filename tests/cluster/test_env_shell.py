"""Shell commands in the environment: cwd, output, exit code, process group, timeout
(the whole group killed), output cap, validation, concurrency (one shared session)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tests.cluster.helpers import env_url, launched, make_workspace, pid_alive

MiB = 1024 * 1024


class Shell:
    def __init__(self, world, sid: str, ws: str) -> None:
        self.world, self.sid, self.ws = world, sid, ws

    def post(self, body, client=None):
        return (client or self.world.alice).post(env_url(self.sid, "/shell"), json=body)

    def run(self, command: str, **extra) -> dict:
        r = self.post({"command": command, **extra})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def sh(world):
    ws = make_workspace(world.node_a.home, {"hello.txt": "hi\n"})
    sid = launched(world.alice, world.host_a, ws)
    yield Shell(world, sid, ws)
    world.alice.delete(f"/v1/sessions/{sid}")


def test_runs_in_the_root_with_separate_streams_and_exit_code(sh):
    out = sh.run("pwd; cat hello.txt; echo to-err >&2; exit 3")
    assert out["exit_code"] == 3
    assert out["stdout"] == f"{sh.ws}\nhi\n"
    assert out["stderr"] == "to-err\n"
    assert out["timed_out"] is False and out["truncated"] is False
    assert out["cwd"] == sh.ws
    out = sh.run("true")
    assert out["exit_code"] == 0 and out["stdout"] == "" and out["stderr"] == ""
    out = sh.run("kill -9 $$")
    assert out["exit_code"] == 137 and out["timed_out"] is False
    # state does not carry over between commands
    sh.run("cd /; export FOO=1")
    out = sh.run('pwd; echo "[$FOO]"')
    assert out["stdout"] == f"{sh.ws}\n[]\n"


def test_stdin_is_empty_and_output_is_decoded_leniently(sh):
    t0 = time.monotonic()
    out = sh.run("cat; echo after; printf 'bad \\377 byte\\n'; printf '\\376' >&2")
    assert time.monotonic() - t0 < 5
    assert out["exit_code"] == 0
    assert out["stdout"] == "after\nbad \ufffd byte\n" and out["stderr"] == "\ufffd"


def test_big_output_on_both_streams_at_once(sh):
    out = sh.run(
        "for i in $(seq 1 2000); do printf '%0100d\\n' $i; printf '%0100d\\n' $i >&2; done"
    )
    assert out["exit_code"] == 0 and out["truncated"] is False
    lines = [f"{i:0100d}" for i in range(1, 2001)]
    assert out["stdout"].splitlines() == lines and out["stderr"].splitlines() == lines


def test_runs_in_its_own_process_group(sh):
    out = sh.run("echo $$; ps -o pgid= -p $$; ps -o sid= -p $$; echo $PPID")
    pid, pgid, sess, ppid = (int(x) for x in out["stdout"].split())
    assert pgid == pid and sess == pid, out["stdout"]
    # not the runner's group: the runner (its parent) lives on
    assert os.getpgid(ppid) != pgid
    assert pid_alive(ppid)


def test_timeout_kills_the_whole_group(sh):
    t0 = time.monotonic()
    out = sh.run("sleep 300 & echo $! > child.pid; echo started; sleep 300", timeout=1)
    took = time.monotonic() - t0
    assert out["timed_out"] is True and out["exit_code"] is None, out
    assert out["stdout"] == "started\n"
    assert took < 5, f"took {took:.1f}s"
    with open(os.path.join(sh.ws, "child.pid")) as f:
        child = int(f.read())
    deadline = time.monotonic() + 3
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = pid_alive(child)
    if alive:
        os.kill(child, 9)
    assert not alive, "the background child survived the timeout"


def test_background_child_holding_the_pipes_does_not_hang_the_call(sh):
    t0 = time.monotonic()
    out = sh.run("sleep 300 & echo $! > child2.pid; echo done")
    assert time.monotonic() - t0 < 5
    assert out["exit_code"] == 0 and out["stdout"] == "done\n" and out["timed_out"] is False
    with open(os.path.join(sh.ws, "child2.pid")) as f:
        child = int(f.read())
    deadline = time.monotonic() + 3
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(child):
        os.kill(child, 9)


def test_output_is_capped_at_1_mib_per_stream(sh):
    out = sh.run("head -c 5242880 /dev/zero | tr '\\0' a; echo done >&2")
    assert out["truncated"] is True and out["exit_code"] == 0
    assert len(out["stdout"]) == MiB and out["stdout"] == "a" * MiB
    assert out["stderr"] == "done\n"
    out = sh.run("head -c 3145728 /dev/zero | tr '\\0' b >&2; echo ok")
    assert out["truncated"] is True
    assert out["stderr"] == "b" * MiB and out["stdout"] == "ok\n"
    out = sh.run(f"head -c {MiB} /dev/zero | tr '\\0' c")  # exactly the cap: not cut
    assert out["truncated"] is False and len(out["stdout"]) == MiB


@pytest.mark.parametrize(
    "body",
    [
        {"command": "touch bad.txt", "timeout": 0},
        {"command": "touch bad.txt", "timeout": 3601},
        {"command": "touch bad.txt", "timeout": "abc"},
        {"command": "touch bad.txt", "timeout": -1},
        {"timeout": 5},
        {"command": ""},
        {"command": 5},
        {"command": None},
        {},
    ],
)
def test_bad_shell_bodies_are_422(sh, body):
    r = sh.post(body)
    assert r.status_code == 422, (body, r.text)
    assert r.json()["error"]["code"] and r.json()["error"]["message"]
    assert not os.path.exists(os.path.join(sh.ws, "bad.txt"))


def test_not_json_is_422(sh, world):
    r = world.alice.post(
        env_url(sh.sid, "/shell"),
        content=b"touch bad.txt",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert not os.path.exists(os.path.join(sh.ws, "bad.txt"))


def test_timeout_bounds_are_accepted(sh):
    assert sh.run("echo 1", timeout=1)["stdout"] == "1\n"
    assert sh.run("echo 2", timeout=3600)["stdout"] == "2\n"


def test_concurrent_shells_do_not_block_each_other_or_the_api(sh, world):
    results: list = [None] * 3
    clients = [world.server.client(world.server.token) for _ in range(4)]

    def one(i):
        results[i] = sh.post({"command": f"sleep 2; echo {i}"}, client=clients[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.5)  # the three are running now
    probes = []
    for _ in range(3):
        p0 = time.monotonic()
        r = clients[3].get(env_url(sh.sid))
        probes.append(time.monotonic() - p0)
        assert r.status_code == 200, r.text
        r = clients[3].get(env_url(sh.sid, "/filesystem/hello.txt"))
        assert r.status_code == 200 and r.json()["content"] == "hi\n"
    still_running = all(t.is_alive() for t in threads)
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    for c in clients:
        c.close()
    assert still_running, "the shells finished before the probes: nothing was measured"
    assert [r.status_code for r in results] == [200, 200, 200]
    assert [r.json()["stdout"] for r in results] == ["0\n", "1\n", "2\n"]
    assert took < 4, f"three 2 s commands took {took:.1f}s together"
    assert max(probes) < 1, f"the API answered in {max(probes):.2f}s while shells ran"


# --- bad input and orphans ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["echo a\x00b", "\x00", "true\x00; rm -rf ."])
def test_a_nul_byte_is_400_invalid_command(sh, command):
    r = sh.post({"command": command})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_command" and "NUL" in err["message"], r.text
    assert os.path.exists(os.path.join(sh.ws, "hello.txt"))


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return fields[0].decode(), int(fields[1])


def _zombies_of(ppid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        st = _stat(int(name)) if name.isdigit() else None
        if st is not None and st == ("Z", ppid):
            found.append(int(name))
    return found


def test_orphans_are_reaped_by_the_runner_and_exit_codes_stay_right(sh):
    """A background child and a daemonising subshell's child outlive the shell: they are
    re-parented to the runner (a child subreaper), which reaps them once they exit,
    while each shell's own exit code still comes back right."""
    out = sh.run(
        "echo $PPID; sleep 1 >/dev/null 2>&1 & echo $!; (sleep 1 >/dev/null 2>&1 & echo $!); exit 3"
    )
    assert out["exit_code"] == 3, out
    runner, *orphans = (int(x) for x in out["stdout"].split())
    parents = [(_stat(p) or ("gone", 0))[1] for p in orphans]
    assert parents == [runner, runner], (runner, parents)  # not PID 1: the runner's now
    deadline = time.monotonic() + 10
    while any(_stat(p) is not None for p in orphans) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [_stat(p) for p in orphans] == [None, None], "the orphans were not reaped"
    # and the runner steals no status from the shells it waits for itself
    codes = [sh.run(f"sleep 0.{i % 3}; exit {i}")["exit_code"] for i in range(1, 13)]
    assert codes == list(range(1, 13))
    out = sh.run("kill -9 $$")
    assert out["exit_code"] == 137
    time.sleep(0.6)  # two reaper ticks
    assert _zombies_of(runner) == []
