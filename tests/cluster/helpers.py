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
    return client.post(f"/v1/hosts/{host_id}/runners",
                       json={"session_id": session_id, "workspace": workspace, **extra})


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
