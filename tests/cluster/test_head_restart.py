"""A crash of the head, with Ray's GCS fault tolerance on, the way cluster.yaml runs it
(`omnigent ray-start --gcs-ft`: the GCS keeps its state in the head's own redis-server).

Every process on the head node is SIGKILLed at once (GCS, raylet, ControlActor, Serve, the
API replicas, and the Redis), then the head is started again by the same command and
`omnigent serve --address` deploys again, as `ray up` / the head's start commands do.

What a user sees: the runner and the terminal on the worker node never stopped (same
runner id and process); the terminal's output made during the outage is in its scrollback
without a gap; the session's changes and diff are unchanged; an attached WebSocket client
is told at once that the connection is gone, and re-attaches; every request made during
the outage fails fast (connection refused or 503), none hangs.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import pytest
import websockets

from tests.cluster.helpers import env_url, launch, make_workspace, new_session, pid_alive
from tests.cluster.test_terminals import AGENT_T, Screen, open_term
from tests.procs import FaultTolerantHead, RayNode, Server, make_home

HEAD_IP = "127.0.0.40"
WORKER_IP = "127.0.0.41"


def _changes(client, sid: str) -> dict:
    r = client.get(env_url(sid, "/changes"))
    assert r.status_code == 200, r.text
    return {c["path"]: c["status"] for c in r.json()["data"]}


async def _attach(server: Server, sid: str, tid: str) -> Screen:
    url = server.url.replace("http", "ws", 1)
    ws = await websockets.connect(
        f"{url}/v1/sessions/{sid}/resources/terminals/{tid}/attach",
        additional_headers={"Authorization": f"Bearer {server.token}"},
        max_size=None,
        open_timeout=20,
    )
    return Screen(ws)


def _ticks(output: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"tick-(\d+)\b", output)]


class Prober:
    """Asks for the session every 0.3 s from the crash on, each request with a 20 s
    limit, and keeps what each got and how long it took."""

    def __init__(self, server: Server, sid: str) -> None:
        self.url = f"{server.url}/v1/sessions/{sid}"
        self.headers = {"Authorization": f"Bearer {server.token}"}
        self.results: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=20) as client:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    outcome = str(client.get(self.url).status_code)
                except httpx.TimeoutException:
                    outcome = "timeout"
                except httpx.TransportError:
                    outcome = "refused"
                self.results.append((outcome, time.monotonic() - t0))
                self._stop.wait(0.3)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_head_crash_leaves_runners_and_terminals_on_workers_running():
    home = make_home("ft-head")
    head = FaultTolerantHead(HEAD_IP, home)
    server = Server(home=home)
    worker = None
    try:
        server.start(address=head.address, node_ip=HEAD_IP, timeout=240)
        alice = server.client(server.token)
        worker = RayNode(server, WORKER_IP, make_home("ft-worker")).wait_started()
        host = worker.wait_host(alice)
        ws = make_workspace(worker.home, {"keep.txt": "k\n", "edit.txt": "old\n"})
        sid = new_session(alice, agent=AGENT_T)["id"]
        r = launch(alice, host, sid, ws)
        assert r.status_code == 200, r.text
        runner_id = r.json()["runner_id"]
        runner_pid = alice.get(f"/v1/runners/{runner_id}").json()["pid"]
        put = alice.put(env_url(sid, "/filesystem/edit.txt"), json={"content": "new\n"})
        assert put.status_code == 200, put.text
        before = _changes(alice, sid)
        assert before == {"edit.txt": "modified"}
        tid = open_term(alice, sid, "ft")

        async def crash_while_attached() -> float:
            """Seconds from the crash until the attached client knows its link is gone."""
            screen = await _attach(server, sid, tid)
            await screen.run("for i in $(seq 1 100000); do echo tick-$i; sleep 0.1; done")
            await screen.expect(rb"tick-5\b")
            t0 = time.monotonic()
            await asyncio.to_thread(head.crash)
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(screen.ws.recv(), 10)
            return time.monotonic() - t0

        crashed_at = time.monotonic()
        told_after = asyncio.run(crash_while_attached())
        prober = Prober(server, sid)
        assert told_after < 5, f"the attached client learnt of the crash after {told_after:.1f}s"
        assert pid_alive(runner_pid)
        assert head.redis_pid() is None  # the Redis went down with the head

        head.start()
        server.start(address=head.address, node_ip=HEAD_IP, timeout=240)
        back = server.client(server.token)
        worker.wait_host(back, timeout=60)
        outage = time.monotonic() - crashed_at
        prober.stop()
        print(f"head down to API answering with the worker's host online: {outage:.1f}s")
        print("during the outage:", sorted({(o, round(s, 1)) for o, s in prober.results}))

        # during the outage: refused or 503, at once; never a hang, never a 500
        outcomes = {o for o, _ in prober.results}
        assert outcomes <= {"refused", "503", "200"}, prober.results
        assert max(s for _, s in prober.results) < 10, prober.results

        session = back.get(f"/v1/sessions/{sid}").json()
        assert session["status"] == "running" and session["runner_id"] == runner_id
        assert back.get(f"/v1/runners/{runner_id}").json()["pid"] == runner_pid
        assert pid_alive(runner_pid)
        assert _changes(back, sid) == before
        diff = back.get(env_url(sid, "/diff/edit.txt"))
        assert diff.status_code == 200 and "new" in diff.text, diff.text
        terminals = back.get(f"/v1/sessions/{sid}/resources/terminals").json()["data"]
        assert [t["id"] for t in terminals] == [tid]

        async def reattach() -> list[int]:
            screen = await _attach(server, sid, tid)
            first = _ticks(await screen.collect(2.0))  # the scrollback, then live output
            await screen.close()
            return first

        ticks = asyncio.run(reattach())
        # continuous: the loop kept printing (every 0.1 s) while the head was down,
        # and the scrollback holds that output without a gap
        assert ticks, "no output on re-attach"
        assert ticks[-1] - ticks[0] >= 10 * (outage - 5), (ticks[0], ticks[-1], outage)
        assert ticks == list(range(ticks[0], ticks[-1] + 1)), "a gap in the output"

        # and still a working session: a new write is seen as a change
        put = back.put(env_url(sid, "/filesystem/after.txt"), json={"content": "x\n"})
        assert put.status_code == 200, put.text
        assert _changes(back, sid) == {**before, "after.txt": "created"}

        # `ray down` (ray-stop) stops the Redis too, and drops its data: a cluster stopped
        # on purpose is not resumed by the next `ray up`
        stopped = head.stop()
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert head.redis_pid() is None
        assert not (head.state / "gcs-redis" / "appendonlydir").exists()
    finally:
        server.cli("stop", check=False)
        if worker is not None:
            worker.kill()
        head.kill()
