"""Join keys and host identities: how a Ray node becomes a user's host (pure logic).

A machine joins the cluster with a *join line*: `ray start --address=…` with the Ray
cluster token and `OMNIGENT_JOIN=<join key>` in its environment. The join key names the
user whose host the machine becomes and proves the server issued it: it is
`<user>.<mac>`, the mac an HMAC of the user name under the server's secret, so nobody can
make one for another user without that secret, and the server can check one without
storing anything. The key is deterministic: the same user always gets the same line, so
a machine rejoining with it becomes the same user's host again.

A host's id depends only on its owner and the machine's identity (`machine_id`, kept in
the machine's `~/.omnigent/`), so it is stable across rejoins, node ids and even a lost
database.
"""

from __future__ import annotations

import hashlib
import hmac

JOIN_ENV = "OMNIGENT_JOIN"  # the join key, in the environment of `ray start`
HOST_NAME_ENV = "OMNIGENT_HOST_NAME"  # optional display name of the host (else hostname)
_MAC_HEX = 32


def join_key(secret: bytes, user: str) -> str:
    return f"{user}.{_mac(secret, user)}"


def join_key_owner(secret: bytes, key: str | None) -> str | None:
    """The user a join key was issued for, or None if the server did not issue it."""
    if not key:
        return None
    user, dot, mac = key.strip().rpartition(".")
    if not dot or not user or len(mac) != _MAC_HEX:
        return None
    return user if hmac.compare_digest(mac, _mac(secret, user)) else None


def host_id_for(owner: str, machine_id: str) -> str:
    digest = hashlib.sha256(f"{owner}\0{machine_id}".encode()).hexdigest()
    return f"host_{digest[:24]}"


def _mac(secret: bytes, user: str) -> str:
    return hmac.new(secret, b"join:" + user.encode(), hashlib.sha256).hexdigest()[:_MAC_HEX]
