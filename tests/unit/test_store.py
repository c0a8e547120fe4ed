"""The SQLite store (omnigent.store.Store)."""

import hashlib
import sqlite3

import pytest

from omnigent.store import Store

TOKEN = "omg_Raw-Secret-Token-0123456789abcdef"


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "state" / "omnigent.db")


@pytest.fixture
def store(db_path):
    s = Store(db_path)
    yield s
    s.close()


def _session(sid="conv_1", owner="alice", **kw):
    return {
        "id": sid,
        "owner": owner,
        "title": "t",
        "runner_id": None,
        "status": "idle",
        "workspace": None,
        **kw,
    }


def _all_bytes(directory):
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_token_lookup(store):
    store.add_token("alice", TOKEN)
    assert store.user_for_token(TOKEN) == "alice"
    assert store.user_for_token(TOKEN + "x") is None
    assert store.user_for_token("") is None


def test_token_is_stored_hashed_never_in_plain_text(db_path, tmp_path):
    s = Store(db_path)
    s.add_token("alice", TOKEN)
    # While open (the token may sit in the WAL file) and after close (checkpointed).
    assert TOKEN.encode() not in _all_bytes(tmp_path)
    s.close()
    data = _all_bytes(tmp_path)
    assert data, "the database file should exist"
    assert TOKEN.encode() not in data
    rows = sqlite3.connect(db_path).execute("SELECT hash, user FROM tokens").fetchall()
    assert rows == [(hashlib.sha256(TOKEN.encode()).hexdigest(), "alice")]


def test_upsert_host_same_owner_and_machine_keeps_id(store):
    h1 = store.upsert_host("alice", "m1", "host_a", {"name": "box", "platform": "linux"})
    h2 = store.upsert_host(
        "alice", "m1", "host_b", {"name": "box2", "platform": "linux", "info": {"cpus": 4}}
    )
    assert h1["id"] == h2["id"] == "host_a"
    assert h2["name"] == "box2" and h2["info"] == {"cpus": 4}
    assert h2["registered_at"] == h1["registered_at"]
    assert [h["id"] for h in store.all_hosts()] == ["host_a"]


def test_upsert_host_other_owner_gets_other_id(store):
    a = store.upsert_host("alice", "m1", "host_a", {"name": "box", "platform": "linux"})
    b = store.upsert_host("bob", "m1", "host_b", {"name": "box", "platform": "linux"})
    assert a["id"] == "host_a" and b["id"] == "host_b"
    assert b["owner"] == "bob"
    assert sorted(h["id"] for h in store.all_hosts()) == ["host_a", "host_b"]


def test_bind_runner_compare_and_set(store):
    store.put_session(_session())
    first = store.bind_runner("conv_1", "runner_1", {"host_id": "host_a", "workspace": "/w"})
    assert first["runner_id"] == "runner_1"
    assert first["status"] == "launching" and first["workspace"] == "/w"
    # A second launch loses while the first runner is launching ...
    assert store.bind_runner("conv_1", "runner_2", {}) is None
    assert store.get_session("conv_1")["runner_id"] == "runner_1"
    # ... and while it is running.
    store.update_session_if_runner("conv_1", "runner_1", {"status": "running"})
    assert store.bind_runner("conv_1", "runner_2", {}) is None
    # Once it has exited, a new runner may be bound.
    store.update_session_if_runner("conv_1", "runner_1", {"status": "runner_exited"})
    again = store.bind_runner("conv_1", "runner_2", {})
    assert again["runner_id"] == "runner_2" and again["status"] == "launching"
    assert store.get_session("conv_1")["runner_id"] == "runner_2"


def test_bind_runner_unknown_session(store):
    assert store.bind_runner("conv_nope", "runner_1", {}) is None


def test_update_session_if_runner_only_for_current_runner(store):
    store.put_session(_session())
    store.bind_runner("conv_1", "runner_1", {})
    assert store.update_session_if_runner("conv_1", "runner_old", {"status": "running"}) is None
    assert store.get_session("conv_1")["status"] == "launching"
    out = store.update_session_if_runner("conv_1", "runner_1", {"status": "running"})
    assert out["status"] == "running"
    assert store.get_session("conv_1")["status"] == "running"
    assert store.update_session_if_runner("conv_nope", "runner_1", {"status": "x"}) is None


def test_data_survives_reopen(db_path):
    s = Store(db_path)
    s.add_token("alice", TOKEN)
    s.upsert_host("alice", "m1", "host_a", {"name": "box", "platform": "linux"})
    s.put_session(_session())
    s.bind_runner("conv_1", "runner_1", {"workspace": "/w"})
    s.put_runner({"runner_id": "runner_1", "session_id": "conv_1", "status": "running"})
    s.close()

    s2 = Store(db_path)
    try:
        assert s2.user_for_token(TOKEN) == "alice"
        assert [h["id"] for h in s2.all_hosts()] == ["host_a"]
        sess = s2.get_session("conv_1")
        assert sess["runner_id"] == "runner_1" and sess["workspace"] == "/w"
        assert [x["id"] for x in s2.sessions_of("alice")] == ["conv_1"]
        assert s2.get_runner("runner_1")["status"] == "running"
        assert [r["runner_id"] for r in s2.live_runners()] == ["runner_1"]
    finally:
        s2.close()


def test_sessions_of_is_per_owner_and_sorted(store):
    for sid, owner in [("conv_3", "alice"), ("conv_1", "alice"), ("conv_2", "bob")]:
        store.put_session(_session(sid, owner))
    assert [s["id"] for s in store.sessions_of("alice")] == ["conv_1", "conv_3"]
    assert [s["id"] for s in store.sessions_of("bob")] == ["conv_2"]
    store.delete_session("conv_1")
    assert store.get_session("conv_1") is None
    assert [s["id"] for s in store.sessions_of("alice")] == ["conv_3"]


def test_session_page_is_paginate_by_key_as_one_query(store):
    """Every cursor combination, both orders, several limits: the same pages as the
    in-memory keyset pagination over all of the owner's sessions."""
    import itertools
    import random

    from omnigent.domain.pagination import paginate_by_key

    rng = random.Random(7)
    ids = sorted({f"conv_{rng.randrange(10**6):06d}" for _ in range(60)})
    for sid in ids:
        store.put_session(_session(sid, "alice"))
    store.put_session(_session("conv_000000x", "bob"))  # never in alice's pages
    mine = store.sessions_of("alice")
    probes = [None, ids[0], ids[5], ids[-1], "conv_", "conv_5", "conv_999999z"]
    for after, before, desc, limit in itertools.product(
        probes, probes, (False, True), (1, 3, 20, 1000)
    ):
        want = paginate_by_key(
            mine, key=lambda s: s["id"], limit=limit, after=after, before=before, descending=desc
        )
        items, more = store.session_page("alice", limit, after, before, desc)
        assert ([s["id"] for s in items], more) == ([s["id"] for s in want.items], want.has_more), (
            after,
            before,
            desc,
            limit,
        )
