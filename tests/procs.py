"""Real processes for the tests: `omnigent serve`, Ray nodes joined with join lines,
`omnigent host`.

Each is started in its own process group and stopped by killing that group, so tests stop
exactly what they started (never `ray stop`).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from omnigent import gcs_redis
from omnigent.nodeprocs import alive, descendants, marked_processes

BIN = Path(sys.executable).parent
SERVER_IP = "127.0.0.10"


_homes: list[str] = []


def make_home(tag: str) -> str:
    """A fresh HOME for a server, node or daemon; removed when the test run ends."""
    home = tempfile.mkdtemp(prefix=f"omni-{tag}-")
    os.chmod(home, 0o755)
    _homes.append(home)
    return home


@atexit.register
def _remove_homes() -> None:
    for home in _homes:
        subprocess.run(["chmod", "-R", "u+rwx", home], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(home: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "OMNIGENT_"))}
    env.update(HOME=home, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", **extra)
    return env


class Proc:
    """A child process in its own group, its output collected in memory."""

    def __init__(self, argv: list[str], env: dict, name: str):
        self.name = name
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            exited = self.popen.poll() is not None
            for line in list(self.lines):
                m = rx.search(line)
                if m:
                    return m
            if exited:
                self._reader.join(2)
                if not any(rx.search(x) for x in self.lines):
                    raise RuntimeError(f"{self.name} exited:\n" + "\n".join(self.lines[-40:]))
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: no {pattern!r} in:\n" + "\n".join(self.lines[-40:])
                )
            time.sleep(0.05)

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)  # whatever it left in its group
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass


class Server:
    def __init__(
        self, home: str | None = None, port: int | None = None, env: dict | None = None
    ) -> None:
        self.env = env or {}
        self.home = home or make_home("server")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None

    def start(
        self, timeout: float = 180, address: str | None = None, node_ip: str = SERVER_IP
    ) -> Server:
        t0 = time.monotonic()
        attach = ["--address", address] if address else []
        self.proc = Proc(
            [
                str(BIN / "omnigent"),
                "serve",
                "--port",
                str(self.port),
                "--node-ip-address",
                node_ip,
                *attach,
            ],
            base_env(self.home, **self.env),
            "server",
        )
        if address:
            self.proc.wait_for(r"the server keeps running", timeout)
            self.token = Path(self.home, ".omnigent", "token").read_text().strip()
        else:
            self.token = self.proc.wait_for(r"^(omg_\S+)$", timeout).group(1)
        join = self.proc.wait_for(
            r"RAY_AUTH_MODE=token RAY_AUTH_TOKEN=(\S+) "
            r"OMNIGENT_JOIN=(\S+) ray start --address=(\S+)",
            5,
        )
        self.ray_token, self.join_key, self.ray_address = join.groups()
        self.host_id = self.proc.wait_for(r"host (host_\w+) online", 5).group(1)
        self.start_seconds = time.monotonic() - t0
        return self

    def join_key_of(self, user: str) -> str:
        out = self.cli("join-line", user)
        return re.search(r"OMNIGENT_JOIN=(\S+)", out).group(1)

    def cli(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            [str(BIN / "omnigent"), *args],
            env=base_env(self.home),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"omnigent {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def stop(self) -> None:
        if self.proc:
            self.proc.stop(signal.SIGTERM, timeout=60)

    def create_token(self, user: str) -> str:
        out = subprocess.run(
            [str(BIN / "omnigent"), "token", "create", user],
            env=base_env(self.home),
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=90)


def _free_ports() -> list[str]:
    """Explicit free ports: Ray's fixed defaults collide when nodes share a machine."""
    names = [
        "node-manager-port",
        "object-manager-port",
        "metrics-export-port",
        "dashboard-agent-grpc-port",
        "dashboard-agent-listen-port",
        "runtime-env-agent-port",
    ]
    return [f"--{name}={free_port()}" for name in names]


class RayHead:
    """A Ray head started by a test (for `omnigent serve --address`)."""

    def __init__(self, ip: str, home: str) -> None:
        self.ip = ip
        self.port = free_port()
        self.address = f"{ip}:{self.port}"
        self.token_file = Path(home, "ray_token")
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        env = base_env(
            home,
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(self.token_file),
            RAY_health_check_period_ms="1000",
            RAY_health_check_timeout_ms="1000",
            RAY_health_check_failure_threshold="3",
            RAY_health_check_initial_delay_ms="1000",
        )
        self.proc = Proc(
            [
                str(BIN / "ray"),
                "start",
                "--head",
                f"--port={self.port}",
                f"--node-ip-address={ip}",
                "--block",
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--object-store-memory={100 * 2**20}",
                *_free_ports(),
            ],
            env,
            f"head {ip}",
        )
        self.proc.wait_for(r"Ray runtime started|--block", 90)

    def kill(self) -> None:
        self.proc.stop(signal.SIGKILL, timeout=5)


class FaultTolerantHead:
    """A Ray head started the way cluster.yaml starts one: `omnigent ray-start --gcs-ft`,
    so its GCS keeps the cluster's state in the head's own Redis (mutual TLS, append-only
    file; omnigent.gcs_redis). `crash()` SIGKILLs everything on the head, Redis included;
    `start()` again is the head coming back (the same command, address and ports)."""

    HEALTH = dict(
        RAY_health_check_period_ms="1000",
        RAY_health_check_timeout_ms="1000",
        RAY_health_check_failure_threshold="3",
        RAY_health_check_initial_delay_ms="1000",
    )

    def __init__(self, ip: str, home: str) -> None:
        self.ip = ip
        self.home = home
        self.port = free_port()
        self.redis_port = free_port()
        self.address = f"{ip}:{self.port}"
        self.state = Path(home, ".omnigent")
        self.token_file = self.state / "ray_token"  # made by ray-start
        self.ports = _free_ports()
        # A temp dir of its own: `ray start --head` refuses to start where the last
        # cluster it started ran at this address while a process still names it, and on
        # one machine the worker nodes' processes do (on two machines they would not).
        self.temp_dir = tempfile.mkdtemp(prefix="rayft-", dir="/tmp")
        self.start()

    def start(self) -> None:
        Path(self.temp_dir, "ray_current_cluster").unlink(missing_ok=True)
        argv = [
            str(BIN / "omnigent"),
            "ray-start",
            "--gcs-ft",
            f"--redis-port={self.redis_port}",
            f"--node-ip-address={self.ip}",
            "--",
            "--head",
            f"--port={self.port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            f"--object-store-memory={100 * 2**20}",
            f"--temp-dir={self.temp_dir}",
            *self.ports,
        ]
        out = subprocess.run(
            argv,
            env=base_env(self.home, **self.HEALTH),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    def redis_pid(self) -> int | None:
        return gcs_redis.running_pid(gcs_redis.GcsRedis(self.state / "gcs-redis", self.redis_port))

    def processes(self) -> list[int]:
        try:
            mark = json.loads((self.state / "ray-node.json").read_text())["mark"]
        except (OSError, ValueError, KeyError):
            mark = None
        pids = descendants(marked_processes(mark)) if mark else []
        redis = self.redis_pid()
        return pids + ([redis] if redis else [])

    def crash(self) -> None:
        """SIGKILL of everything on the head at once: GCS, raylet, every worker process
        (the ControlActor, Serve and the API replicas among them) and the Redis."""
        pids = self.processes()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> subprocess.CompletedProcess:
        """`omnigent ray-stop`, as `ray down` runs it: the server, the node, the Redis."""
        return subprocess.run(
            [str(BIN / "omnigent"), "ray-stop"],
            env=base_env(self.home),
            capture_output=True,
            text=True,
            timeout=180,
        )

    def kill(self) -> None:
        try:
            self.stop()
        finally:
            self.crash()  # whatever a failed stop left
            shutil.rmtree(self.temp_dir, ignore_errors=True)


class RayNode:
    """A machine joined to the server's cluster with a join line (so a host of the join
    key's user; `join_key=None` joins with the cluster token only: no host), with a HOME
    of its own.

    Start nodes one after the other (`wait_started` before the next): nodes sharing a
    machine and a session dir race for the same socket names when started at once.
    """

    def __init__(
        self,
        server: Server,
        ip: str,
        home: str | None = None,
        env: dict | None = None,
        join_key: str | None = "admin",
        ray_token: str | None = "server",
        name: str | None = None,
    ) -> None:
        self.ip = ip
        self.home = home or make_home(f"node-{ip}")
        self.machine_id = secrets.token_hex(16)  # as `omnigent.machine` would make it
        path = Path(self.home, ".omnigent", "machine_id")
        if path.exists():
            self.machine_id = path.read_text().strip()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.machine_id)
        key = server.join_key if join_key == "admin" else join_key
        self.owner = key.rpartition(".")[0] if key else None
        token = server.ray_token if ray_token == "server" else ray_token
        extra = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else {}
        if key:
            extra["OMNIGENT_JOIN"] = key
        extra["OMNIGENT_HOST_NAME"] = name or f"node-{ip}"
        extra.update(env or {})
        self.started_at = time.monotonic()
        self.proc = Proc(
            [
                str(BIN / "ray"),
                "start",
                f"--address={server.ray_address}",
                f"--node-ip-address={ip}",
                "--block",
                "--num-cpus=2",
                "--disable-usage-stats",
                *_free_ports(),
            ],
            base_env(self.home, **extra),
            f"node {ip}",
        )

    @property
    def host_id(self) -> str:
        from omnigent.domain.enrollment import host_id_for

        return host_id_for(self.owner, self.machine_id)

    def wait_started(self, timeout: float = 90) -> RayNode:
        self.proc.wait_for(r"Ray runtime started|--block", timeout)
        return self

    def wait_host(self, client: httpx.Client, timeout: float = 60) -> str:
        """Wait until this node is an online host (seen by `client`, its owner)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = client.get(f"/v1/hosts/{self.host_id}")
            if r.status_code == 200 and r.json()["status"] == "online":
                return self.host_id
            if self.proc.popen.poll() is not None:
                raise RuntimeError("the node exited:\n" + "\n".join(self.proc.lines[-30:]))
            time.sleep(0.1)
        raise TimeoutError(f"node {self.ip} not an online host after {timeout}s")

    def kill(self) -> None:
        self.proc.signal_group(signal.SIGKILL)
        self.proc.stop(signal.SIGKILL, timeout=5)


class HostCommand:
    """`omnigent host` for a machine (a HOME): joins through the API and supervises."""

    def __init__(
        self, server: Server, token: str, node_ip: str, home: str, ray_token: str | None = None
    ) -> None:
        self.home = home
        token_file = Path(home, "api_token")
        token_file.write_text(token)
        token_file.chmod(0o600)
        env = base_env(home, RAY_AUTH_TOKEN=ray_token or server.ray_token)
        self.proc = Proc(
            [
                str(BIN / "omnigent"),
                "host",
                server.url,
                "--token-file",
                str(token_file),
                "--node-ip-address",
                node_ip,
            ],
            env,
            f"host command {node_ip}",
        )

    def wait_registered(self, timeout: float = 90) -> str:
        return self.proc.wait_for(r"registered as host (host_\w+)", timeout).group(1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.stop(sig, timeout=30)
