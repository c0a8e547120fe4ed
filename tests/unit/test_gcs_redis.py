"""The head's Redis for Ray's GCS (omnigent.gcs_redis), with a real redis-server: only a
client with a certificate of its own CA gets in, nothing listens off loopback or without
TLS, the secrets are private files, and what it keeps outlives a SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import time
from pathlib import Path

import pytest

from omnigent import gcs_redis
from tests.procs import free_port


@pytest.fixture
def redis(tmp_path):
    r = gcs_redis.prepare(tmp_path, free_port())
    gcs_redis.start(r)
    yield r
    gcs_redis.stop(r)
    assert gcs_redis.running_pid(r) is None


def _command(r: gcs_redis.GcsRedis, *args: str, cert: bool = True) -> bytes:
    """One RESP command over TLS; the raw answer."""
    ctx = ssl.create_default_context(cafile=str(r.dir / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(r.dir / "client.crt"), str(r.dir / "client.key"))
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        parts.append(f"${len(a.encode())}\r\n{a}\r\n".encode())
    with (
        socket.create_connection(("127.0.0.1", r.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(b"".join(parts))
        return s.recv(4096)


def test_a_client_with_the_cas_certificate_gets_in(redis):
    assert _command(redis, "PING") == b"+PONG\r\n"


def test_a_client_without_a_certificate_is_refused(redis):
    try:
        answer: bytes | None = _command(redis, "PING", cert=False)
    except (ssl.SSLError, OSError):
        answer = None
    assert answer in (None, b""), answer  # TLS 1.3 may report the refusal as EOF


def test_no_plain_text_port_and_loopback_only(redis):
    text = redis.conf.read_text()
    assert "port 0\n" in text and "bind 127.0.0.1\n" in text
    assert "tls-auth-clients yes" in text and "requirepass" not in text
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as s:
        s.sendall(b"PING\r\n")  # plain text on the TLS port gets no PONG
        s.settimeout(2)
        try:
            answer = s.recv(100)
        except (TimeoutError, ConnectionError):
            answer = b""
    assert b"PONG" not in answer


def test_secrets_are_private(redis):
    assert stat.S_IMODE(os.stat(redis.dir).st_mode) == 0o700
    for name in ("ca.crt", "server.key", "server.crt", "client.key", "client.crt"):
        assert stat.S_IMODE(os.stat(redis.dir / name).st_mode) == 0o600, name


def test_ray_is_told_where_and_how_to_connect(redis):
    env = redis.ray_env()
    assert env["RAY_REDIS_ADDRESS"] == f"rediss://127.0.0.1:{redis.port}"
    for key in ("RAY_REDIS_CA_CERT", "RAY_REDIS_CLIENT_CERT", "RAY_REDIS_CLIENT_KEY"):
        assert Path(env[key]).is_file()


def test_what_it_keeps_survives_a_sigkill_and_a_new_start(redis):
    assert _command(redis, "SET", "k", "v") == b"+OK\r\n"
    time.sleep(1.5)  # appendfsync everysec
    os.kill(gcs_redis.running_pid(redis), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while gcs_redis.running_pid(redis) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    again = gcs_redis.prepare(redis.dir.parent, redis.port)  # the same CA: still trusted
    gcs_redis.start(again)
    deadline = time.monotonic() + 10
    while (answer := _command(again, "GET", "k")).startswith(b"-LOADING"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert answer == b"$1\r\nv\r\n"


def test_start_is_idempotent_and_stop_can_drop_the_data(redis):
    pid = gcs_redis.running_pid(redis)
    assert gcs_redis.start(redis) == pid
    _command(redis, "SET", "k", "v")
    gcs_redis.stop(redis, drop_data=True)
    assert not (redis.dir / "appendonlydir").exists()
    gcs_redis.start(redis)
    assert _command(redis, "GET", "k") == b"$-1\r\n"  # a new cluster starts empty
