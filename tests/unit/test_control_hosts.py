"""The host table (omnigent.control.hosts): enrollment decisions, status, the long-poll."""

from __future__ import annotations

import asyncio

import pytest

from omnigent.control.hosts import Hosts
from omnigent.domain.enrollment import join_key
from omnigent.errors import Forbidden, HostNotFound, HostOffline
from tests.unit.control_helpers import Clock, run, store_thread

SECRET = b"s" * 32
OWN = "node-own"


def about(machine: str, key: str | None = None) -> dict:
    return {
        "name": f"m-{machine}",
        "platform": "linux",
        "home": "/home/x",
        "cpus": 4,
        "memory_bytes": 2**30,
        "machine_id": machine,
        "join_key": key,
    }


@pytest.fixture
def db(tmp_path):
    db = store_thread(tmp_path)
    yield db
    db.close()


def make(db, clock=None) -> Hosts:
    return Hosts(db, clock or Clock(), OWN, "admin", SECRET)


async def enroll(hosts: Hosts, node: str, machine: str, key: str | None = None) -> dict | None:
    owner = hosts.owner_for(node, about(machine, key))
    if owner is None:
        return None
    host = await hosts.record(owner, node, "10.0.0.1", about(machine, key))
    hosts.ready(host, node)
    return host


def test_who_may_be_a_host(db):
    hosts = make(db)
    assert hosts.owner_for(OWN, about("m")) == "admin"
    assert hosts.owner_for("n1", about("m", join_key(SECRET, "bob"))) == "bob"
    assert hosts.owner_for("n1", about("m", join_key(b"other" * 8, "bob"))) is None
    assert hosts.owner_for("n1", about("m", None)) is None
    assert hosts.join_key(user="carol") == join_key(SECRET, "carol")


def test_enrolled_node_is_online_while_alive_then_offline(db):
    async def scenario():
        clock = Clock(1000)
        hosts = make(db, clock)
        await hosts.load()
        new = await hosts.nodes_alive({OWN: "10.0.0.1", "n1": "10.0.0.2"})
        assert sorted(new) == [("n1", "10.0.0.2"), (OWN, "10.0.0.1")]
        assert await hosts.nodes_alive({OWN: "10.0.0.1", "n1": "10.0.0.2"}) == []  # once
        own = await enroll(hosts, OWN, "mine")
        bobs = await enroll(hosts, "n1", "theirs", join_key(SECRET, "bob"))
        assert hosts.status(own["id"]) == "online" and hosts.status(bobs["id"]) == "online"
        assert hosts.own_online()["id"] == own["id"]
        assert hosts.public(bobs)["last_seen_at"] == 1000
        assert hosts.online_node("bob", bobs["id"]) == "n1"
        with pytest.raises(Forbidden):
            hosts.owned("admin", bobs["id"])
        with pytest.raises(HostNotFound):
            hosts.owned("bob", "host_nope")
        clock.now = 2000
        await hosts.nodes_alive({OWN: "10.0.0.1"})  # n1 died
        assert hosts.status(bobs["id"]) == "offline"
        assert hosts.public(hosts.hosts[bobs["id"]])["last_seen_at"] == 2000
        with pytest.raises(HostOffline):
            hosts.online_node("bob", bobs["id"])
        # the table survives a restart (offline until its node is seen again)
        again = make(db, clock)
        await again.load()
        assert again.hosts[bobs["id"]]["last_seen_at"] == 2000
        assert again.status(bobs["id"]) == "offline"
        assert again.own_online() is None

    run(scenario())


def test_a_failed_enrollment_is_tried_again(db):
    async def scenario():
        hosts = make(db)
        assert await hosts.nodes_alive({"n1": "ip"}) == [("n1", "ip")]
        hosts.enroll_failed("n1")
        assert await hosts.nodes_alive({"n1": "ip"}) == [("n1", "ip")]

    run(scenario())


def test_watch_answers_when_the_table_changes(db):
    async def scenario():
        hosts = make(db)
        await hosts.load()
        version, rows = await hosts.watch(-1, 0)
        assert rows == []
        waiting = asyncio.ensure_future(hosts.watch(version, 10))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await hosts.nodes_alive({OWN: "ip"})
        host = await enroll(hosts, OWN, "mine")
        v2, rows = await asyncio.wait_for(waiting, 2)
        assert v2 != version
        assert rows == [{"host": hosts.public(host), "node_id": OWN}]
        hosts.count(host["id"], +1)
        v3, rows = await hosts.watch(v2, 1)
        assert v3 != v2 and rows[0]["host"]["runner_count"] == 1
        hosts.count(host["id"], -1)
        hosts.count(host["id"], -1)  # never below zero
        assert (await hosts.watch(v3, 1))[1][0]["host"]["runner_count"] == 0
        assert (await hosts.watch(-5, 0))[0] == hosts.version.value  # unchanged: at once

    run(scenario())
