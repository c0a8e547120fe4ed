"""The API as a client meets it: the OpenAPI document and /docs a real server serves, and
the answers the document promises for inputs at its edges (non-UTF-8 escapes, a method
a route does not take, both cursors)."""

from __future__ import annotations

import os

from openapi_spec_validator import validate

from tests.cluster.helpers import env_url, launched, make_workspace, raw_request


def test_openapi_document_and_docs_page(world):
    r = world.anon.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    shell = "/v1/sessions/{session_id}/resources/environments/{environment_id}/shell"
    assert "post" in doc["paths"][shell]
    page = world.anon.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/openapi.json" in page.text and "swagger" in page.text.lower()


def test_non_utf8_escape_in_a_path_is_400_and_creates_nothing(world):
    ws = make_workspace(world.node_a.home)
    sid = launched(world.alice, world.host_a, ws)
    status, body = raw_request(
        world.server.url,
        world.server.token,
        "PUT",
        env_url(sid, "/filesystem/%FF.txt"),
        b'{"content": "x"}',
    )
    assert status == 400 and body["error"]["code"] == "invalid_path"
    status, body = raw_request(
        world.server.url, world.server.token, "GET", env_url(sid, "/filesystem/caf%C3%A9.txt")
    )
    assert status == 404  # valid UTF-8 escapes still name their file
    assert os.listdir(ws) == []


def test_a_method_the_route_does_not_take_is_405_with_allow(world):
    ws = make_workspace(world.node_a.home)
    sid = launched(world.alice, world.host_a, ws)
    r = world.alice.post(env_url(sid, "/changes"), json={})
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_both_cursors_give_the_entries_between(world):
    ws = make_workspace(world.node_a.home, {f"f{i}": "" for i in range(6)})
    sid = launched(world.alice, world.host_a, ws)
    r = world.alice.get(
        env_url(sid, "/filesystem"), params={"order": "asc", "after": "f1", "before": "f4"}
    )
    assert r.status_code == 200, r.text
    assert [e["name"] for e in r.json()["data"]] == ["f2", "f3"]


def test_resource_list_shows_each_upload_and_delete_at_once(world):
    """The API keeps what it adds to the runner's inventory (files, moved-in terminals)
    until it changes: a change must show in the very next list."""
    ws = make_workspace(world.node_a.home)
    sid = launched(world.alice, world.host_a, ws)

    def files() -> list[str]:
        r = world.alice.get(f"/v1/sessions/{sid}/resources")
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["data"] if x["type"] == "file"]

    assert files() == [] and files() == []  # the second from what the API kept
    ids = []
    for i in range(3):
        r = world.alice.post(
            f"/v1/sessions/{sid}/resources/files", files={"file": (f"f{i}.txt", b"x", "text/plain")}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        assert files() == ids
    assert world.alice.delete(f"/v1/sessions/{sid}/resources/files/{ids[0]}").status_code == 200
    assert files() == ids[1:]
