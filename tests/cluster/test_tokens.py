"""Tokens are listed and revoked with the CLI; a revoked token is refused within a second
or two, although the API replica caches the tokens it has checked (for 30 s)."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.procs import BIN, Server, base_env


@pytest.fixture(scope="module")
def server():
    server = Server().start()
    try:
        yield server
    finally:
        server.stop()


def token_ids(server: Server, user: str) -> list[str]:
    out = server.cli("token", "list", "--user", user)
    return [line.split()[0] for line in out.splitlines() if line.split()[1:2] == [user]]


def test_list_then_revoke_takes_effect_at_once(server):
    before = set(token_ids(server, "carol"))
    token = server.create_token("carol")
    carol, admin = server.client(token), server.client(server.token)
    for _ in range(3):  # checked once, then answered from the replica's cache
        assert carol.get("/v1/sessions").status_code == 200
    [new_id] = set(token_ids(server, "carol")) - before
    assert new_id.startswith("tok_")
    listing = server.cli("token", "list")
    assert new_id in listing and token not in listing

    out = server.cli("token", "revoke", new_id)
    revoked_at = time.monotonic()
    assert new_id in out
    while True:
        status = carol.get("/v1/sessions").status_code
        if status == 401:
            break
        assert status == 200
        assert time.monotonic() - revoked_at < 2, "a revoked token still works after 2 s"
        time.sleep(0.05)
    assert carol.get("/v1/sessions").json()["error"]["code"] == "unauthenticated"
    assert new_id not in token_ids(server, "carol")
    assert admin.get("/v1/sessions").status_code == 200  # other tokens are untouched


def test_revoking_an_unknown_id_fails_clearly(server):
    out = subprocess.run(
        [str(BIN / "omnigent"), "token", "revoke", "tok_0000000000000000"],
        env=base_env(server.home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "token not found: tok_0000000000000000" in out.stderr
    assert server.client(server.token).get("/v1/sessions").status_code == 200
