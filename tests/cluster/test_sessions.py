"""Sessions as CONTRACT.md gives them."""

from __future__ import annotations

from tests.cluster.helpers import AGENT, launched, make_workspace


def test_create_get_delete(world):
    r = world.alice.post("/v1/sessions", json={"title": "hello", "agent": AGENT})
    assert r.status_code == 201
    s = r.json()
    assert s["id"].startswith("conv_") and s["object"] == "session"
    assert s["status"] == "idle" and s["runner_id"] is None and s["title"] == "hello"
    assert s["agent"]["terminals"]["shell"]["command"] == "bash"
    assert world.alice.get(f"/v1/sessions/{s['id']}").json() == s
    d = world.alice.delete(f"/v1/sessions/{s['id']}")
    assert d.status_code == 200
    assert d.json() == {"id": s["id"], "object": "session.deleted", "deleted": True}
    assert world.alice.get(f"/v1/sessions/{s['id']}").status_code == 404
    assert world.alice.delete(f"/v1/sessions/{s['id']}").status_code == 200  # idempotent


def test_list_pages_in_both_orders(world):
    with world.server.client(world.server.create_token("dave")) as dave:
        ids = [dave.post("/v1/sessions", json={"agent": AGENT}).json()["id"] for _ in range(7)]
        desc = dave.get("/v1/sessions", params={"limit": 3}).json()
        assert [s["id"] for s in desc["data"]] == ids[::-1][:3] and desc["has_more"]
        assert desc["first_id"] == ids[-1] and desc["last_id"] == ids[-3]
        nxt = dave.get("/v1/sessions", params={"limit": 3, "after": desc["last_id"]}).json()
        assert [s["id"] for s in nxt["data"]] == ids[::-1][3:6]
        asc = dave.get("/v1/sessions", params={"order": "asc", "limit": 10}).json()
        assert [s["id"] for s in asc["data"]] == ids and not asc["has_more"]
        before = dave.get("/v1/sessions", params={"order": "asc", "before": ids[4]}).json()
        assert [s["id"] for s in before["data"]] == ids[:4]
        dave.delete(f"/v1/sessions/{ids[2]}")  # a deleted cursor still works
        after = dave.get("/v1/sessions", params={"order": "asc", "after": ids[2]}).json()
        assert [s["id"] for s in after["data"]] == ids[3:]
        for bad in ({"order": "up"}, {"limit": 0}, {"limit": 1001}):
            r = dave.get("/v1/sessions", params=bad)
            assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_bad_bodies_are_4xx_with_the_error_shape(world):
    cases = [
        b"{not json",
        b"[]",
        b'{"title": "no agent"}',
        b'{"agent": {"name": ""}}',
        b'{"agent": {"name": "a", "terminals": {"t": {"args": []}}}}',
        b'{"agent": "x"}',
        b'{"agent": {"name": "a"}, "title": 5}',
    ]
    for body in cases:
        r = world.alice.post(
            "/v1/sessions", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["code"] == "validation_error"
    r = world.alice.get("/v1/runners/runner_nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "runner_not_found"


def test_agent_id_agent_name_and_updated_at(world):
    with world.server.client(world.server.create_token("erin")) as erin:
        idle = erin.post("/v1/sessions", json={"title": "idle", "agent": AGENT}).json()
        assert idle["agent_id"].startswith("ag_") and idle["agent_name"] == AGENT["name"]
        assert idle["updated_at"] == idle["created_at"]
        same = erin.post("/v1/sessions", json={"agent": dict(reversed(AGENT.items()))}).json()
        other = erin.post("/v1/sessions", json={"agent": {**AGENT, "name": "other"}}).json()
        assert same["agent_id"] == idle["agent_id"] != other["agent_id"]
        assert other["agent_name"] == "other"
        items = {s["id"]: s for s in erin.get("/v1/sessions").json()["data"]}
        assert items[idle["id"]] == idle and items[other["id"]] == other
    # binding and status changes move updated_at (alice: she owns the host)
    workspace = make_workspace(world.node_a.home)
    sid = launched(world.alice, world.host_a, workspace)
    bound = world.alice.get(f"/v1/sessions/{sid}").json()
    assert bound["status"] == "running" and bound["agent_id"] == idle["agent_id"]
    assert bound["updated_at"] >= bound["created_at"]
    world.alice.delete(f"/v1/sessions/{sid}")
