"""Stop the server and start it again: users, tokens, hosts, sessions and their bindings
are still there; a machine that joins the new cluster with its join line is the same
host again."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

from tests.cluster.helpers import new_session, pid_alive, proc_env
from tests.procs import RayNode, Server, make_home


def test_state_survives_a_restart():
    server = Server().start()
    node = None
    try:
        token_file = Path(server.home, ".omnigent", "token")
        assert token_file.read_text().strip() == server.token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        bob_token = server.create_token("bob")
        bob_home = make_home("bob")
        bob_key = server.join_key_of("bob")
        node = RayNode(server, "127.0.0.21", bob_home, join_key=bob_key)
        with server.client(bob_token) as bob:
            bob_host = node.wait_host(bob)
        with server.client(server.token) as alice:
            [local] = alice.get("/v1/hosts").json()["hosts"]
            idle = new_session(alice)
            ws = make_home("ws")
            bound = new_session(alice, host_id=local["id"], workspace=ws)
            assert bound["status"] == "running"
        node.kill()
        server.stop()

        server = Server(server.home, server.port).start()
        assert server.token == token_file.read_text().strip()  # the same token, reused
        with server.client(server.token) as alice, server.client(bob_token) as bob:
            hosts = alice.get("/v1/hosts").json()["hosts"]
            assert [(h["id"], h["status"]) for h in hosts] == [(local["id"], "online")]
            assert hosts[0]["registered_at"] == local["registered_at"]
            [bh] = bob.get("/v1/hosts").json()["hosts"]
            assert (bh["id"], bh["status"]) == (bob_host, "offline")
            assert alice.get(f"/v1/sessions/{idle['id']}").json() == idle
            after = alice.get(f"/v1/sessions/{bound['id']}").json()
            assert after["runner_id"] == bound["runner_id"]
            assert after["host_id"] == local["id"] and after["workspace"] == os.path.realpath(ws)
            # the runner ended with the old server (its cluster went away with it)
            assert after["status"] == "runner_exited"
            runner = alice.get(f"/v1/runners/{bound['runner_id']}").json()
            assert runner["status"] == "runner_exited"
            listed = [s["id"] for s in alice.get("/v1/sessions").json()["data"]]
            assert listed == [bound["id"], idle["id"]]
            # bob's machine joins the new cluster with the same join key: the same host
            assert server.join_key_of("bob") == bob_key  # the same line works again
            node = RayNode(server, "127.0.0.21", bob_home, join_key=bob_key)
            assert node.wait_host(bob) == bob_host
            assert bob.get(f"/v1/hosts/{bob_host}").json()["status"] == "online"
    finally:
        if node:
            node.kill()
        server.stop()


def test_two_servers_side_by_side(world):
    """Another server with its own HOME and port does not see or touch the first."""
    other = Server().start()
    try:
        with other.client(other.token) as c:
            hosts = c.get("/v1/hosts").json()["hosts"]
            assert len(hosts) == 1 and hosts[0]["id"] not in (world.host_local, world.host_a)
            assert c.get("/v1/sessions").json()["data"] == []
        assert world.alice.get("/v1/hosts").status_code == 200
        with other.client(world.server.token) as wrong:
            assert wrong.get("/v1/hosts").status_code == 401
    finally:
        other.stop()
    assert world.alice.get(f"/v1/hosts/{world.host_local}").json()["status"] == "online"


def _session_actor_pids(home: str) -> list[int]:
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if (
                Path(f"/proc/{entry}/cmdline").read_bytes().startswith(b"ray::SessionActor")
                and proc_env(int(entry)).get("HOME") == home
            ):
                pids.append(int(entry))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            pass
    return pids


def test_launch_and_delete_need_no_session_actor_but_a_stuck_runner_is_made_to_go():
    """Sessions don't cost a process: a launch and the delete of a session whose runner
    stops when asked start no SessionActor. A runner that does not answer (frozen) is
    left to the session's actor, which kills it; that actor goes with the session."""
    server = Server(env={"OMNIGENT_SESSION_IDLE_S": "2"}).start()
    try:
        with server.client(server.token) as alice:
            [local] = alice.get("/v1/hosts").json()["hosts"]
            for frozen in (False, True):
                s = new_session(alice, host_id=local["id"], workspace=make_home("ws"))
                runner = alice.get(f"/v1/runners/{s['runner_id']}").json()
                assert pid_alive(runner["pid"])
                assert _session_actor_pids(server.home) == []
                if frozen:
                    os.kill(runner["pid"], signal.SIGSTOP)
                t0 = time.monotonic()
                assert alice.delete(f"/v1/sessions/{s['id']}").status_code == 200
                assert time.monotonic() - t0 < (30 if frozen else 3)
                deadline = time.monotonic() + 10
                while pid_alive(runner["pid"]) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert not pid_alive(runner["pid"])
                assert alice.get(f"/v1/sessions/{s['id']}").status_code == 404
                deadline = time.monotonic() + 10
                while _session_actor_pids(server.home) and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert _session_actor_pids(server.home) == []
    finally:
        server.stop()


def _raylets_at(ip: str) -> int:
    count = 0
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"/raylet") and f"--node_ip_address={ip}".encode() in argv:
            count += 1
    return count


def test_omnigent_host_rejoins_after_the_server_restarts():
    """The head restarts (a new Ray cluster): `omnigent host` notices, stops its stale
    node and joins the new cluster, as the same host, with one node for its address."""
    from tests.procs import HostCommand

    server = Server().start()
    cmd = None
    try:
        cmd = HostCommand(server, server.token, "127.0.0.22", make_home("rejoiner"))
        host_id = cmd.wait_registered()
        server.stop()
        server = Server(server.home, server.port).start()
        deadline = time.monotonic() + 90
        while sum(x.startswith("registered as host") for x in cmd.proc.lines) < 2:
            assert time.monotonic() < deadline, "\n".join(cmd.proc.lines[-20:])
            time.sleep(0.2)
        with server.client(server.token) as alice:
            assert alice.get(f"/v1/hosts/{host_id}").json()["status"] == "online"
        assert _raylets_at("127.0.0.22") == 1
    finally:
        if cmd:
            cmd.stop()
        server.stop()
    assert _raylets_at("127.0.0.22") == 0
