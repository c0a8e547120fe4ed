"""Who may see what: hosts answer 403 to others (the reference says so), unknown ids 404."""

from __future__ import annotations

from omnigent.errors import Forbidden, HostNotFound


def owned_host(hosts: dict[str, dict], user: str, host_id: str) -> dict:
    """The host `host_id` of `user`; NotFound if unknown, Forbidden if someone else's."""
    host = hosts.get(host_id)
    if host is None:
        raise HostNotFound(f"host not found: {host_id}")
    if host["owner"] != user:
        raise Forbidden("you do not own this host")
    return host
