"""Small helpers shared by the cluster tests."""

from __future__ import annotations

import os
import time

AGENT = {"name": "test-agent", "terminals": {"shell": {"command": "bash", "args": ["--norc"]}}}


def new_session(client, **extra) -> dict:
    r = client.post("/v1/sessions", json={"title": "t", "agent": AGENT, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def launch(client, host_id: str, session_id: str, workspace: str, **extra):
    return client.post(
        f"/v1/hosts/{host_id}/runners",
        json={"session_id": session_id, "workspace": workspace, **extra},
    )


def host_status(client, host_id: str) -> str:
    return client.get(f"/v1/hosts/{host_id}").json()["status"]


def wait_status(client, host_id: str, status: str, timeout: float) -> float:
    """Seconds until the host reads `status`; fails after `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if host_status(client, host_id) == status:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"host {host_id} not {status} after {timeout}s")


def proc_env(pid: int) -> dict:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [p.split(b"=", 1) for p in f.read().split(b"\0") if b"=" in p]
    return {k.decode(): v.decode() for k, v in pairs}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def raw_get(base_url: str, token: str, raw_path: str) -> tuple[int, dict]:
    """GET exactly `raw_path` (HTTP clients like httpx remove dot segments themselves)."""
    import http.client
    import json
    from urllib.parse import urlsplit

    u = urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", raw_path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


# --- environments (tests/cluster/test_env_*.py) ------------------------------------------

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def env_url(session_id: str, rest: str = "") -> str:
    """`/v1/sessions/{sid}/resources/environments/default` + rest."""
    return f"/v1/sessions/{session_id}/resources/environments/default{rest}"


def put_files(root: str, files: dict) -> None:
    """Create files under `root` ({relative path: str | bytes}), parents included."""
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)


def make_workspace(home: str, files: dict | None = None, prefix: str = "ws-") -> str:
    """A fresh directory under `home` (a node's HOME), filled; its real path."""
    import tempfile

    ws = os.path.realpath(tempfile.mkdtemp(prefix=prefix, dir=home))
    put_files(ws, files or {})
    return ws


def git(repo: str, *args: str) -> str:
    import subprocess

    out = subprocess.run(
        ["git", "-C", repo, *args], capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def launched(client, host_id: str, workspace: str, **extra) -> str:
    """A new session with a runner on `host_id` in `workspace`; its id."""
    s = new_session(client)
    r = launch(client, host_id, s["id"], workspace, **extra)
    assert r.status_code == 200, r.text
    return s["id"]


def raw_request(
    base_url: str,
    token: str | None,
    method: str,
    raw_path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict]:
    """Send exactly `raw_path` (no normalisation of dot segments, `//` or escapes)."""
    import http.client
    import json
    from urllib.parse import urlsplit

    u = urlsplit(base_url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = content_type
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, raw_path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def error_code(r) -> str | None:
    """`error.code` of an httpx response (None if the body is not the error shape)."""
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):  # not JSON, or JSON of another shape
        return None
