"""Bearer tokens: checked, created, listed and revoked.

A token is shown once, when created; the store keeps only its hash. A token's *id*
(`tok_…`) is derived from that hash one way, so it is safe to show and to type, and says
nothing about the secret or its hash.

The API replicas cache tokens they have checked. So that a revocation takes effect at
once, the token version (the store's revocation counter) is published by long-poll
(`watch`): a replica drops its cache when the version changes. A revocation made straight
in the store (`omnigent token revoke` on the server's machine) is noticed by `refresh`,
which the ControlActor's monitor calls twice a second.
"""

from __future__ import annotations

import hashlib

from omnigent.control.db import StoreThread
from omnigent.control.watch import Version
from omnigent.errors import InvalidRequest, TokenNotFound
from omnigent.ids import new_token
from omnigent.store import Store


def valid_user(user: str) -> bool:
    return bool(user) and user.replace("-", "").replace("_", "").replace(".", "").isalnum()


def token_id(token_hash: str) -> str:
    return "tok_" + hashlib.sha256(b"omnigent token id:" + token_hash.encode()).hexdigest()[:20]


def create_token(store: Store, user: str) -> str:
    """A new token of `user` (the secret: shown once, stored hashed)."""
    if not valid_user(user):
        raise InvalidRequest("user names are letters, digits, '-', '_' and '.'")
    token = new_token()
    store.add_token(user, token)
    return token


def list_tokens(store: Store, user: str | None = None) -> list[dict]:
    return [
        {
            "id": token_id(t["hash"]),
            "object": "token",
            "user": t["user"],
            "created_at": t["created_at"],
        }
        for t in store.tokens(user)
    ]


def revoke_token(store: Store, tid: str) -> dict:
    """Revoke the token `tid` (an id from `list_tokens`); TokenNotFound if there is none."""
    for t in store.tokens():
        if token_id(t["hash"]) == tid and store.delete_token(t["hash"]):
            return {"id": tid, "object": "token.deleted", "user": t["user"], "deleted": True}
    raise TokenNotFound(f"token not found: {tid}")


class Tokens:
    def __init__(self, db: StoreThread) -> None:
        self.db = db
        self.version = Version(-1)  # set from the store by `refresh`

    async def authenticate(self, token: str) -> str | None:
        return await self.db.read(Store.user_for_token, token)

    async def create(self, user: str) -> str:
        return await self.db(create_token, self.db.store, user)

    async def list(self, user: str | None = None) -> list[dict]:
        return await self.db.read(list_tokens, user)

    async def revoke(self, tid: str) -> dict:
        try:
            return await self.db(revoke_token, self.db.store, tid)
        finally:
            await self.refresh()
            await self.version.settled()  # every API replica has dropped its cache

    async def refresh(self) -> int:
        """Follow the store's revocation counter (wakes the watchers when it moved)."""
        self.version.set(await self.db.read(Store.token_generation))
        return self.version.value

    async def watch(self, known: int, wait_s: float, follower: str | None = None) -> int:
        return await self.version.wait_past(known, wait_s, follower)
