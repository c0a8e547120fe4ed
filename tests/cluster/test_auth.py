"""Every route wants a valid bearer token; users only see what is theirs."""

from __future__ import annotations

import pytest

ROUTES = [
    ("GET", "/v1/hosts"),
    ("GET", "/v1/hosts/{host}"),
    ("GET", "/v1/hosts/{host}/filesystem"),
    ("GET", "/v1/hosts/{host}/filesystem/tmp"),
    ("POST", "/v1/hosts/{host}/runners"),
    ("POST", "/v1/sessions"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/sessions/conv_x"),
    ("DELETE", "/v1/sessions/conv_x"),
    ("GET", "/v1/runners/runner_x"),
    ("GET", "/v1/cluster"),
]


@pytest.mark.parametrize("method,path", ROUTES)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc", "Bearer"])
def test_every_route_is_401_without_a_valid_token(world, method, path, header):
    headers = {"Authorization": header} if header else {}
    r = world.anon.request(
        method, path.format(host=world.host_a), headers=headers, content=b"{not json"
    )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"


def test_users_see_only_their_own(world):
    r = world.bob.get(f"/v1/hosts/{world.host_a}")
    assert r.status_code == 403
    r = world.bob.get(f"/v1/hosts/{world.host_a}/filesystem")
    assert r.status_code == 403
    mine = world.alice.post("/v1/sessions", json={"agent": {"name": "a"}}).json()
    assert world.bob.get(f"/v1/sessions/{mine['id']}").status_code == 404
    assert world.bob.delete(f"/v1/sessions/{mine['id']}").status_code == 404
    assert mine["id"] not in [s["id"] for s in world.bob.get("/v1/sessions").json()["data"]]
    assert world.alice.get(f"/v1/sessions/{mine['id']}").status_code == 200


def test_token_created_while_running_works_at_once(world):
    token = world.server.create_token("carol")
    with world.server.client(token) as carol:
        r = carol.get("/v1/hosts")
        assert r.status_code == 200 and r.json() == {"hosts": []}
