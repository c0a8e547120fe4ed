"""The control plane keeps answering during a burst of writes (issue 12): while many
clients create sessions at once, `GET /v1/sessions/{id}` and `GET /v1/hosts` answer 200
with bounded latency.

Two servers: the world's (this machine's disk, fast), and one of its own whose store sits
on a simulated slow disk (tests/slow_fsync.c, LD_PRELOADed: each fsync of the store's
files sleeps SLOW_MS first). On that one a read used to queue behind every pending
write's flush (one thread did both): with W creations in flight a GET waited about
W × SLOW_MS; reads now run on connections of their own and writes share their flushes.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.cluster.helpers import new_session
from tests.procs import Server, make_home

BURST = 300  # sessions created
CLIENTS = 16  # creating at once
SLOW_MS = 50


class Probe(threading.Thread):
    """Sequential GETs of `path` until `stop`: the latency of each, and any non-200."""

    def __init__(self, client: httpx.Client, path: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.client, self.path, self.stop = client, path, stop
        self.seconds: list[float] = []
        self.bad: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            r = self.client.get(self.path)
            self.seconds.append(time.monotonic() - t0)
            if r.status_code != 200:
                self.bad.append(f"{r.status_code} {r.text[:200]}")


def burst(server: Server, token: str) -> dict:
    """BURST creations from CLIENTS clients, probed meanwhile: what the probes saw."""
    clients = [server.client(token) for _ in range(CLIENTS + 2)]
    try:
        target = new_session(clients[0])["id"]
        for c in clients:  # connections open, each path warm
            c.get(f"/v1/sessions/{target}")
        stop = threading.Event()
        probes = [
            Probe(clients[-1], f"/v1/sessions/{target}", stop),
            Probe(clients[-2], "/v1/hosts", stop),
        ]
        for p in probes:
            p.start()
        t0 = time.monotonic()
        try:
            with ThreadPoolExecutor(CLIENTS) as pool:
                made = list(
                    pool.map(lambda i: new_session(clients[i % CLIENTS])["id"], range(BURST))
                )
        finally:
            stop.set()
            for p in probes:
                p.join(60)
        took = time.monotonic() - t0
        listed = clients[0].get("/v1/sessions", params={"limit": 1000}).json()["data"]
        return {
            "made": made,
            "listed": {s["id"] for s in listed},
            "burst_s": took,
            "get": probes[0],
            "hosts": probes[1],
        }
    finally:
        for c in clients:
            c.close()


def summary(seconds: list[float]) -> str:
    ms = sorted(x * 1000 for x in seconds)
    return f"n={len(ms)} p50={statistics.median(ms):.1f}ms max={ms[-1]:.1f}ms"


@pytest.fixture()
def slow_disk_server(tmp_path):
    lib = tmp_path / "slow_fsync.so"
    src = Path(__file__).resolve().parent.parent / "slow_fsync.c"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"], check=True)
    env = {
        "LD_PRELOAD": str(lib),
        "SLOW_FSYNC_MS": str(SLOW_MS),
        "SLOW_FSYNC_MATCH": "omnigent.db",  # the store's database and its WAL
        "OMNIGENT_RUNNER_POOL_HIGH": "1",
        "OMNIGENT_API_REPLICAS": "1",
    }
    server = Server(home=make_home("slow-disk"), env=env).start()
    try:
        server.token = Path(server.home, ".omnigent", "token").read_text().strip()
        yield server
    finally:
        server.stop()


def test_reads_do_not_queue_behind_a_slow_disk(slow_disk_server):
    seen = burst(slow_disk_server, slow_disk_server.token)
    get, hosts = seen["get"], seen["hosts"]
    assert not get.bad and not hosts.bad, (get.bad[:3], hosts.bad[:3])
    assert set(seen["made"]) <= seen["listed"]
    assert len(get.seconds) >= 5, summary(get.seconds)
    # One thread doing reads and writes made a GET wait for the flushes of the writes
    # queued before it (up to 16 × 50 ms: the old code measured p50 0.37 s, max 0.8 s),
    # and the creations had a flush each (300 × 50 ms: 16 s). Now a GET waits for no
    # flush (p50 ~12 ms), and the creations share theirs (~3 s).
    print(
        f"slow disk: burst of {BURST} in {seen['burst_s']:.1f}s; GET session "
        f"{summary(get.seconds)}; GET hosts {summary(hosts.seconds)}"
    )
    median = statistics.median(get.seconds)
    assert median < 0.15, f"GET /v1/sessions/{{id}} during the burst: {summary(get.seconds)}"
    assert max(hosts.seconds) < 5, summary(hosts.seconds)
    assert seen["burst_s"] < BURST * SLOW_MS / 1000, "a flush per creation"


def test_reads_answer_during_a_creation_burst(world):
    # a user of its own: the other tests' listings of alice's sessions stay as they were
    seen = burst(world.server, world.server.create_token("burst"))
    get, hosts = seen["get"], seen["hosts"]
    assert not get.bad and not hosts.bad, (get.bad[:3], hosts.bad[:3])
    assert set(seen["made"]) <= seen["listed"]
    assert len(get.seconds) >= 5 and len(hosts.seconds) >= 5
    # Generous (two cores shared with the servers and the other tests): a stall, a
    # read that waits for the burst to end, or an error fails it.
    assert max(get.seconds) < 3, summary(get.seconds)
    assert max(hosts.seconds) < 3, summary(hosts.seconds)
    assert statistics.median(get.seconds) < 0.25, summary(get.seconds)
    print(
        f"burst of {BURST} in {seen['burst_s']:.1f}s; GET session {summary(get.seconds)}; "
        f"GET hosts {summary(hosts.seconds)}; {os.getloadavg()[0]:.1f} load"
    )
