"""The host daemon (`omnigent host`): keeps this machine registered as a host.

It finds (or makes) this machine's Ray node, opens the tunnel to the server, registers
with a stable machine identity (`~/.omnigent/machine_id`), and beats every second. It
reconnects with back-off when the server goes away. The host is offline once it stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import websockets

from omnigent.config import state_dir

log = logging.getLogger("omnigent.host")


def machine_id(home: str | None = None) -> str:
    """This machine's stable identity: made once, kept under the state dir."""
    path = state_dir(home) / "machine_id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(16))
        os.replace(tmp, path)  # atomic: two daemons starting at once agree
        return path.read_text().strip()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def describe_machine(node_ip: str) -> dict:
    home = os.path.expanduser("~")
    return {
        "type": "register", "machine_id": machine_id(home), "name": socket.gethostname(),
        "platform": sys.platform, "node_ip": node_ip, "home": home,
        "cpus": os.cpu_count(), "memory_bytes": _memory_bytes(),
    }


def default_node_ip() -> str:
    from ray.util import get_node_ip_address

    return get_node_ip_address()


class RegistrationRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class HostDaemon:
    def __init__(self, server_url: str, token: str, node_ip: str, *, join: bool = True) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.node_ip = node_ip
        self.join = join
        self.host: dict | None = None
        self.registered = threading.Event()
        self._stop = asyncio.Event()

    @property
    def _ws_url(self) -> str:
        return self.server_url.replace("http", "ws", 1) + "/v1/hosts/connect"

    async def run(self) -> None:
        """Stay connected until `stop()`; refusals that retrying cannot fix raise."""
        delay = 0.5
        joined = False
        while not self._stop.is_set():
            try:
                await self._session()
                delay = 0.5
            except RegistrationRefused as exc:
                if exc.code == "node_not_found" and self.join and not joined:
                    await asyncio.to_thread(self._join_cluster)
                    joined = True
                    continue
                raise
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as exc:
                log.warning("tunnel to %s lost (%s); retrying in %.1fs", self.server_url, exc, delay)
            if self._stop.is_set():
                break
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 5.0)

    async def _session(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with websockets.connect(self._ws_url, additional_headers=headers,
                                      open_timeout=10, ping_interval=10) as ws:
            await ws.send(json.dumps(describe_machine(self.node_ip)))
            try:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 4401:
                    raise RegistrationRefused("unauthenticated", "the token was refused") from None
                raise
            if reply.get("type") != "registered":
                raise RegistrationRefused(reply.get("code", "refused"), reply.get("message", ""))
            self.host = reply["host"]
            self.registered.set()
            log.info("registered as host %s (%s)", self.host["id"], self.host["name"])
            while not self._stop.is_set():
                await ws.send('{"type": "beat"}')
                try:
                    await asyncio.wait_for(self._stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
            await ws.close()

    def _join_cluster(self) -> None:
        """Make this machine a node of the server's Ray cluster (`ray start --address`)."""
        info = httpx.get(f"{self.server_url}/v1/cluster",
                         headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        info.raise_for_status()
        address = info.json()["ray_address"]
        ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        cmd = [ray_bin, "start", f"--address={address}", f"--node-ip-address={self.node_ip}"]
        log.info("this machine is not a node of the cluster yet: %s", " ".join(cmd))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        self._stop.set()
