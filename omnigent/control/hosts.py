"""The host table: which enrolled machines there are, which are online, whose they are.

A host is an enrolled Ray node: the server's own node (the admin's), or a node whose
`ray start` carried a join key this server issued (omnigent.domain.enrollment). It is
online while its node is alive and its HostActor answered on it (`ready`). The table is
published by long-poll (`watch`), so that the API reads hosts without an actor call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from omnigent.control.db import StoreThread
from omnigent.control.watch import Version
from omnigent.domain.enrollment import host_id_for, join_key, join_key_owner
from omnigent.domain.ownership import owned_host
from omnigent.errors import HostOffline
from omnigent.store import Store

log = logging.getLogger(__name__)


class Hosts:
    def __init__(
        self,
        db: StoreThread,
        clock: Callable[[], float],
        own_node_id: str,
        admin_user: str,
        secret: bytes,
    ) -> None:
        self.db = db
        self.clock = clock
        self.own_node_id = own_node_id
        self.admin_user = admin_user
        self.secret = secret
        self.hosts: dict[str, dict] = {}
        self.alive_nodes: dict[str, str] = {}  # node id -> its IP, as of the last check
        self.seen_nodes: set[str] = set()  # nodes probed (or being probed) already
        self.ready_hosts: set[str] = set()  # hosts whose HostActor answered on their node
        self.runner_counts: dict[str, int] = {}
        self.version = Version()

    async def load(self) -> None:
        self.hosts = {h["id"]: h for h in await self.db.read(Store.all_hosts)}
        self.version.bump()

    # reading ------------------------------------------------------------------------
    def status(self, host_id: str) -> str:
        node_id = self.hosts[host_id]["info"].get("node_id")
        live = host_id in self.ready_hosts and node_id in self.alive_nodes
        return "online" if live else "offline"

    def public(self, host: dict) -> dict:
        info = host["info"]
        online = self.status(host["id"]) == "online"
        return {
            "id": host["id"],
            "name": host["name"],
            "status": "online" if online else "offline",
            "platform": host["platform"],
            "registered_at": host["registered_at"],
            "runner_count": self.runner_counts.get(host["id"], 0),
            "owner": host["owner"],
            "last_seen_at": int(self.clock()) if online else host["last_seen_at"],
            "cpus": info.get("cpus"),
            "memory_bytes": info.get("memory_bytes"),
        }

    def owned(self, user: str, host_id: str) -> dict:
        return owned_host(self.hosts, user, host_id)

    def online_node(self, user: str, host_id: str) -> str:
        """The node of `user`'s host `host_id`, which must be online."""
        host = self.owned(user, host_id)
        if self.status(host_id) != "online":
            raise HostOffline("the host is offline")
        return host["info"]["node_id"]

    def own_online(self) -> dict | None:
        """The server's own node's host, if it is online (public form)."""
        for host in self.hosts.values():
            if (
                host["info"].get("node_id") == self.own_node_id
                and self.status(host["id"]) == "online"
            ):
                return self.public(host)
        return None

    def join_key(self, user: str) -> str:
        return join_key(self.secret, user)

    async def watch(
        self, known: int, wait_s: float, follower: str | None = None
    ) -> tuple[int, list]:
        """Long-poll: the host table once its version differs from `known`."""
        version = await self.version.wait_past(known, wait_s, follower)
        return version, [
            {"host": self.public(h), "node_id": h["info"].get("node_id")}
            for h in self.hosts.values()
        ]

    # nodes and enrollment ----------------------------------------------------------
    async def nodes_alive(self, alive: dict[str, str]) -> list[tuple[str, str]]:
        """Take the live nodes (id -> IP) as of now; the new ones are returned to be
        enrolled (each once, unless `enroll_failed`). Hosts of dead nodes go offline."""
        gone = set(self.alive_nodes) - set(alive)
        self.alive_nodes = dict(alive)
        new = [(n, ip) for n, ip in alive.items() if n not in self.seen_nodes]
        self.seen_nodes.update(n for n, _ in new)
        if gone:
            now = int(self.clock())
            for host in self.hosts.values():
                if host["info"].get("node_id") in gone and host["id"] in self.ready_hosts:
                    self.ready_hosts.discard(host["id"])
                    host["last_seen_at"] = now
                    await self.db(self.db.store.touch_host, host["id"], now)
            self.version.bump()
        return new

    def enroll_failed(self, node_id: str) -> None:
        self.seen_nodes.discard(node_id)  # tried again on a later pass

    def owner_for(self, node_id: str, about: dict) -> str | None:
        """Whose host the node may be: the admin's (the server's own node), the join
        key's user, or nobody's (None)."""
        if node_id == self.own_node_id:
            return self.admin_user
        owner = join_key_owner(self.secret, about.get("join_key"))
        if owner is None and about.get("join_key"):
            log.warning(
                "node %s joined with a join key this server did not issue; it is not a host",
                node_id,
            )
        return owner

    async def record(self, owner: str, node_id: str, node_ip: str, about: dict) -> dict:
        """The host of (owner, machine) in the store, now on `node_id`."""
        fields = {
            "name": about["name"],
            "platform": about["platform"],
            "info": {
                "node_id": node_id,
                "node_ip": node_ip,
                "home": about["home"],
                "cpus": about["cpus"],
                "memory_bytes": about["memory_bytes"],
            },
        }
        host_id = host_id_for(owner, about["machine_id"])
        return await self.db(self.db.store.upsert_host, owner, about["machine_id"], host_id, fields)

    def ready(self, host: dict, node_id: str) -> None:
        """The host's HostActor answered on its node: online while the node lives."""
        self.hosts[host["id"]] = host
        if node_id in self.alive_nodes:
            self.ready_hosts.add(host["id"])
            log.info("node %s is host %s of %s", node_id, host["id"], host["owner"])
        self.version.bump()

    def count(self, host_id: str, delta: int) -> None:
        self.runner_counts[host_id] = max(0, self.runner_counts.get(host_id, 0) + delta)
        self.version.bump()
