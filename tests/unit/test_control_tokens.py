"""Tokens (omnigent.control.tokens): checked, created, listed, revoked; the token version."""

from __future__ import annotations

import asyncio
import threading

import pytest

from omnigent.control.tokens import Tokens, list_tokens, revoke_token, token_id
from omnigent.errors import InvalidRequest, TokenNotFound
from omnigent.store import Store, hash_token
from tests.unit.control_helpers import run, store_thread


@pytest.fixture
def db(tmp_path):
    db = store_thread(tmp_path)
    yield db
    db.close()


def test_create_authenticate_list_revoke(db):
    async def scenario():
        tokens = Tokens(db)
        await tokens.refresh()
        a = await tokens.create("alice")
        b = await tokens.create("bob")
        assert await tokens.authenticate(a) == "alice"
        assert await tokens.authenticate(b) == "bob"
        listed = await tokens.list()
        assert sorted(t["user"] for t in listed) == ["alice", "bob"]
        assert [t["user"] for t in await tokens.list("bob")] == ["bob"]
        for t in listed:
            assert t["id"].startswith("tok_") and isinstance(t["created_at"], int)
            text = repr(t)
            assert a not in text and b not in text
            assert hash_token(a) not in text and hash_token(b) not in text
        alice_id = next(t["id"] for t in listed if t["user"] == "alice")
        gone = await tokens.revoke(alice_id)
        assert gone == {"id": alice_id, "object": "token.deleted", "user": "alice", "deleted": True}
        assert await tokens.authenticate(a) is None
        assert await tokens.authenticate(b) == "bob"
        assert [t["user"] for t in await tokens.list()] == ["bob"]
        with pytest.raises(TokenNotFound):
            await tokens.revoke(alice_id)  # gone already
        with pytest.raises(TokenNotFound):
            await tokens.revoke("tok_nope")

    run(scenario())


def test_user_names_are_checked(db):
    with pytest.raises(InvalidRequest):
        run(Tokens(db).create("no spaces"))
    with pytest.raises(InvalidRequest):
        run(Tokens(db).create(""))


def test_ids_are_stable_and_distinct():
    assert token_id("a" * 64) == token_id("a" * 64)
    assert token_id("a" * 64) != token_id("b" * 64)
    assert "a" * 20 not in token_id("a" * 64)


def test_revocation_moves_the_version_and_wakes_watchers(db):
    async def scenario():
        tokens = Tokens(db)
        v0 = await tokens.refresh()
        secret = await tokens.create("alice")
        watcher = asyncio.ensure_future(tokens.watch(v0, 10))
        await asyncio.sleep(0.05)
        assert not watcher.done()  # a creation does not move it: nothing cached is stale
        assert await tokens.refresh() == v0
        assert not watcher.done()
        [t] = await tokens.list()
        await tokens.revoke(t["id"])
        v1 = await asyncio.wait_for(watcher, 2)
        assert v1 != v0
        assert await tokens.authenticate(secret) is None
        # unchanged: the long-poll waits out its time and answers the same version
        assert await tokens.watch(v1, 0.05) == v1

    run(scenario())


def test_a_revocation_made_in_the_store_directly_is_noticed_by_refresh(db, tmp_path):
    """`omnigent token revoke` writes to the store from another process."""

    async def scenario():
        tokens = Tokens(db)
        await tokens.create("alice")
        v0 = await tokens.refresh()
        watcher = asyncio.ensure_future(tokens.watch(v0, 10))
        other = Store(str(tmp_path / "state" / "omnigent.db"))  # another connection
        [t] = list_tokens(other)
        revoke_token(other, t["id"])
        other.close()
        await asyncio.sleep(0.05)
        assert not watcher.done()  # not seen until the monitor's refresh
        await tokens.refresh()
        assert await asyncio.wait_for(watcher, 2) != v0

    run(scenario())


def test_store_calls_run_off_the_event_loop_thread(db, monkeypatch):
    seen = []
    original = Store.user_for_token

    def spy(store, token):
        seen.append(threading.current_thread())
        return original(store, token)

    monkeypatch.setattr(Store, "user_for_token", spy)  # a read: on a reader's connection
    run(Tokens(db).authenticate("omg_x"))
    assert seen and seen[0] is not threading.main_thread()
