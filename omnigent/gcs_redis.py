"""The Redis that keeps Ray's GCS state, so that the head can crash and come back.

With Ray's GCS fault tolerance on, the GCS writes the cluster's tables (nodes, actors,
placement groups, the KV store) to an external Redis; a head restarted within Ray's
reconnect window (`gcs_rpc_server_reconnect_timeout_s`, 60 s) reads them back, and the
worker nodes, with every runner and terminal on them, carry on. `omnigent ray-start
--gcs-ft` (cluster.yaml) runs this Redis on the head: Debian's `redis-server`, append-only
file fsync'd every second, under `~/.omnigent/gcs-redis/`.

Authentication without a secret on a command line: Ray hands a Redis *password* to the GCS
as an argument (`--redis_password=…`, readable by every user in `ps`), so this Redis has
none. It listens on loopback only, on a TLS port, and refuses any client without a
certificate signed by its own CA (`tls-auth-clients yes`); the GCS presents one through
Ray's `RAY_REDIS_CA_CERT` / `RAY_REDIS_CLIENT_CERT` / `RAY_REDIS_CLIENT_KEY` variables.
The CA's and the client's keys are files of mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from omnigent.credentials import write_private
from omnigent.nodeprocs import alive

DIR_NAME = "gcs-redis"
DEFAULT_PORT = 6380
_VALID = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class GcsRedis:
    """Where a GCS Redis lives: its directory (config, certificates, data) and port."""

    dir: Path
    port: int

    @property
    def address(self) -> str:
        return f"rediss://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.dir / "redis.conf"

    @property
    def pid_file(self) -> Path:
        return self.dir / "redis.pid"

    def ray_env(self) -> dict[str, str]:
        """The variables `ray start --head` needs to keep its state in this Redis."""
        return {
            "RAY_REDIS_ADDRESS": self.address,
            "RAY_REDIS_CA_CERT": str(self.dir / "ca.crt"),
            "RAY_REDIS_CLIENT_CERT": str(self.dir / "client.crt"),
            "RAY_REDIS_CLIENT_KEY": str(self.dir / "client.key"),
        }


def prepare(state: Path, port: int = DEFAULT_PORT) -> GcsRedis:
    """The Redis's directory, certificates and config under the state dir (kept across
    runs: the same CA, so a restarted head still trusts its Redis). Idempotent."""
    redis = GcsRedis(state / DIR_NAME, port)
    redis.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(redis.dir, 0o700)
    if not (redis.dir / "client.key").exists():
        _make_certificates(redis.dir)
    redis.conf.write_text(config_text(redis))
    return redis


def config_text(redis: GcsRedis) -> str:
    """Loopback only, no plain port, mutual TLS, durable (append-only, fsync each second)."""
    d = redis.dir
    return "\n".join(
        [
            "bind 127.0.0.1",
            "protected-mode yes",
            "port 0",
            f"tls-port {redis.port}",
            f"tls-cert-file {d / 'server.crt'}",
            f"tls-key-file {d / 'server.key'}",
            f"tls-ca-cert-file {d / 'ca.crt'}",
            "tls-auth-clients yes",
            f"dir {d}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            f"pidfile {redis.pid_file}",
            f"logfile {d / 'redis.log'}",
            "daemonize no",
            "",
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, signing_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _make_certificates(d: Path) -> None:
    ca_key = _key()
    ca = _cert("omnigent gcs-redis ca", ca_key, None)
    issuer = ("omnigent gcs-redis ca", ca_key)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
    for name, server in (("server", True), ("client", False)):
        key = _key()
        write_private(d / f"{name}.key", _pem_key(key))
        write_private(
            d / f"{name}.crt", pem(_cert(f"omnigent gcs-redis {name}", key, issuer, server=server))
        )
    write_private(d / "ca.crt", pem(ca))  # last: its presence does not mean the set is whole


def redis_server_bin() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise FileNotFoundError(
            "redis-server is not installed on the head (Debian: apt-get install redis-server)"
        )
    return found


def running_pid(redis: GcsRedis) -> int | None:
    """The pid of this directory's Redis, if it runs (its pid file names a live
    redis-server)."""
    try:
        pid = int(redis.pid_file.read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0]
    except (OSError, ValueError):
        return None
    return pid if b"redis-server" in argv0 else None


def start(redis: GcsRedis, timeout: float = 30) -> int:
    """Start the Redis in the background (its own session: it outlives the command that
    started it, like the Ray node) unless it runs; wait until it accepts connections.
    Returns its pid."""
    pid = running_pid(redis)
    if pid is None:
        proc = subprocess.Popen(
            [redis_server_bin(), str(redis.conf)],
            env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "USER")},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        pid = proc.pid
    wait_listening(redis.port, timeout)
    return pid


def wait_listening(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the GCS Redis did not listen on port {port}") from None
            time.sleep(0.05)


def stop(redis: GcsRedis, drop_data: bool = False, grace: float = 10) -> None:
    """Stop the Redis (SIGTERM: it flushes its append-only file; SIGKILL after `grace`);
    `drop_data`: also delete what it kept, so the next head starts a new cluster."""
    pid = running_pid(redis)
    if pid is not None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while running_pid(redis) == pid and alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not alive(pid):
                break
    if drop_data:
        shutil.rmtree(redis.dir / "appendonlydir", ignore_errors=True)
