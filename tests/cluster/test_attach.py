"""`omnigent serve --address` on a Ray cluster that is already running, and a host daemon
that makes its machine a node of the cluster by itself (`ray start --address`)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.procs import BIN, Proc, RayHead, Server, base_env, make_home


def _processes_with(text: str) -> list[int]:
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                pids.append(int(entry))
        except (FileNotFoundError, PermissionError):
            pass
    return pids


def test_attach_to_running_cluster_and_daemon_joins_by_itself():
    head = RayHead("127.0.0.20", make_home("head"))
    server = Server()
    daemon = None
    try:
        server.start(address=head.address, node_ip="127.0.0.20")
        assert server.ray_address == head.address
        machine = make_home("joiner")
        Path(machine, "joined-by-itself").mkdir()
        daemon = Proc([str(BIN / "omnigent"), "host", server.url, "--token", server.token,
                       "--node-ip-address", "127.0.0.21"],
                      base_env(machine, RAY_AUTH_MODE="disabled"), "joining daemon")
        host_id = daemon.wait_for(r"registered as host (host_\w+)", 120).group(1)
        with server.client(server.token) as alice:
            hosts = {h["id"]: h["status"] for h in alice.get("/v1/hosts").json()["hosts"]}
            assert len(hosts) == 2 and hosts[host_id] == "online"
            listing = alice.get(f"/v1/hosts/{host_id}/filesystem").json()
            assert "joined-by-itself" in [e["name"] for e in listing["data"]]
    finally:
        if daemon:
            daemon.stop()
        # the node the daemon started for itself: stop exactly its processes
        for pid in _processes_with("127.0.0.21"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        server.stop()
        head.kill()
    assert _processes_with("127.0.0.21") == []
