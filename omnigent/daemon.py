"""`omnigent host`: join this machine to a server's cluster as a host, through the API,
and keep it joined.

A machine becomes a host by running a join line (`ray start` with the cluster token and
the user's join key): no daemon is needed for that. This command is for a user who has an
API token rather than a join line: it asks the server for the user's join key, runs
`ray start --block` with it (the cluster token must be given: only the admin hands it
out), waits until the host reads online, and supervises the node: if the node exits (the
head restarted, say) it joins again with back-off, never running a second node. On
Ctrl-C / SIGTERM it stops the node, and the host reads offline.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time

import httpx

from omnigent.config import state_dir
from omnigent.credentials import write_private
from omnigent.domain.enrollment import JOIN_ENV, host_id_for
from omnigent.machine import machine_id
from omnigent.nodeprocs import alive, cmdline_of, ray_bin

# The node this command started: a daemon killed (SIGKILL, OOM) leaves it running in its
# own session, and the next `omnigent host` supervises it instead of joining a second one.
NODE_RECORD = "host-node.json"

log = logging.getLogger("omnigent.host")


class RegistrationRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AdoptedNode:
    """A node a previous `omnigent host` started (not our child): the few things the
    daemon asks of a `subprocess.Popen`, by pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not alive(self.pid):
            self.returncode = -1
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("ray start", timeout)
            time.sleep(0.1)
        return -1


def recorded_node(ray_address: str) -> AdoptedNode | None:
    """The node a previous daemon started for this cluster, if it still runs."""
    try:
        record = json.loads((state_dir() / NODE_RECORD).read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    argv = cmdline_of(pid)
    ours = any(a.endswith("ray") for a in argv[:2]) and "start" in argv
    same = f"--address={ray_address}" in argv
    return AdoptedNode(pid) if alive(pid) and ours and same else None


class HostDaemon:
    def __init__(
        self, server_url: str, token: str, ray_auth: dict[str, str], node_ip: str | None
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.ray_auth = ray_auth
        self.node_ip = node_ip
        self.host_id: str | None = None
        self._stop = threading.Event()
        self._node: subprocess.Popen | AdoptedNode | None = None

    def _cluster(self) -> dict:
        r = httpx.get(
            f"{self.server_url}/v1/cluster",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        if r.status_code == 401:
            raise RegistrationRefused("unauthenticated", "the token was refused")
        r.raise_for_status()
        return r.json()

    def run(self) -> None:
        """Join and stay joined until `stop()`; refusals that retrying cannot fix raise."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                cluster = self._cluster()
            except httpx.HTTPError as exc:
                log.warning(
                    "server %s unreachable (%s); retrying in %.0fs", self.server_url, exc, delay
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 5)
                continue
            owner = cluster["join_key"].rpartition(".")[0]
            self.host_id = host_id_for(owner, machine_id())
            adopted = recorded_node(cluster["ray_address"])
            if adopted is not None:
                log.info("supervising the node a previous run started (pid %d)", adopted.pid)
            node = adopted or self._start_node(cluster)
            self._node = node
            if self._wait_online(timeout=60):
                delay = 1.0
                log.info("registered as host %s of %s", self.host_id, owner)
                print(f"registered as host {self.host_id}", flush=True)
            self._watch(node, cluster["ray_address"])
            if self._stop.is_set():
                break
            log.warning(
                "this machine's Ray node left the cluster (%s); joining again in %.0fs",
                node.returncode,
                delay,
            )
            self._stop_node()
            self._stop.wait(delay)
            delay = min(delay * 2, 5)
        self._stop_node()

    def _watch(self, node: subprocess.Popen | AdoptedNode, ray_address: str) -> None:
        """Until the node exits, or the server moved to another cluster (it restarted:
        this node's raylet would only notice after a minute without its GCS)."""
        checked = time.monotonic()
        while node.poll() is None and not self._stop.wait(0.5):
            if time.monotonic() - checked < 3:
                continue
            checked = time.monotonic()
            try:
                if self._cluster()["ray_address"] != ray_address:
                    return
            except (httpx.HTTPError, RegistrationRefused, KeyError, ValueError):
                pass  # the server is restarting: keep the node until we know

    def _start_node(self, cluster: dict) -> subprocess.Popen:
        argv = [
            ray_bin(),
            "start",
            f"--address={cluster['ray_address']}",
            "--block",
            "--disable-usage-stats",
        ]
        if self.node_ip:
            argv.append(f"--node-ip-address={self.node_ip}")
        env = {**os.environ, **self.ray_auth, JOIN_ENV: cluster["join_key"]}
        log.info("joining the cluster at %s", cluster["ray_address"])
        # its own process group: stopping the node stops every process it started
        node = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        record = {"pid": node.pid, "ray_address": cluster["ray_address"]}
        write_private(state_dir() / NODE_RECORD, json.dumps(record) + "\n")
        return node

    def _wait_online(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.token}"}
        while time.monotonic() < deadline and not self._stop.is_set():
            if self._node is not None and self._node.poll() is not None:
                return False
            try:
                r = httpx.get(
                    f"{self.server_url}/v1/hosts/{self.host_id}", headers=headers, timeout=5
                )
                if r.status_code == 200 and r.json()["status"] == "online":
                    return True
            except httpx.HTTPError:
                pass
            self._stop.wait(0.2)
        return False

    def _stop_node(self) -> None:
        node = self._node
        if node is None or node.poll() is not None:
            return
        try:
            os.killpg(node.pid, signal.SIGTERM)
            node.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:  # whatever of the node's group is left
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        self._stop.set()
