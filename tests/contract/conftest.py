"""A real server for the contract tests (Omnigent's own client, schema fuzzing):
`omnigent serve` with its embedded Ray head, whose own machine is a host, and a session
bound to a runner launched on that host. One per test module, so a module that changes
the server's state (the fuzzer) cannot disturb another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import pytest

from tests.cluster.helpers import launch, make_workspace, new_session
from tests.procs import Server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "client: drives Omnigent's published Python client against our server"
    )
    config.addinivalue_line(
        "markers", "fuzz: schemathesis fuzzing of the server's OpenAPI document (slow)"
    )


@dataclass
class Live:
    server: Server
    http: httpx.Client  # the server's local user
    token: str
    host_id: str  # the server's own machine
    session_id: str  # bound to a running runner on host_id
    runner_id: str
    workspace: str  # the runner's environment root
    idle_session_id: str  # a second session, no runner

    @property
    def url(self) -> str:
        return self.server.url


def wait_running(http: httpx.Client, session_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = http.get(f"/v1/sessions/{session_id}").json()
        if s.get("status") == "running":
            r = http.get(f"/v1/sessions/{session_id}/resources")
            if r.status_code == 200 and any(x["type"] == "environment" for x in r.json()["data"]):
                return s
        if time.monotonic() > deadline:
            raise TimeoutError(f"session {session_id} not running after {timeout}s: {s}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def live():
    server = Server().start()
    try:
        http = server.client(server.token)
        idle = new_session(http, title="idle")
        session = new_session(http, title="bound")
        workspace = make_workspace(server.home, {"README.md": "hello\n"})
        r = launch(http, server.host_id, session["id"], workspace)
        assert r.status_code == 200, r.text
        wait_running(http, session["id"])
        yield Live(
            server,
            http,
            server.token,
            server.host_id,
            session["id"],
            r.json()["runner_id"],
            workspace,
            idle["id"],
        )
        http.close()
    finally:
        server.stop()
