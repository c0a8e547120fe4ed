"""One real cluster for the whole test session: `omnigent serve` (embedded Ray head),
three more Ray nodes on this machine (127.0.0.11, .12 and .13, each with a HOME of its
own, standing in for three machines), joined with join lines: A and B as hosts of the
server's user ("alice"), C as bob's.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.procs import RayNode, Server, make_home


@dataclass
class World:
    server: Server
    alice: httpx.Client  # the server's local user
    bob: httpx.Client
    anon: httpx.Client
    node_a: RayNode
    node_b: RayNode
    node_bob: RayNode
    host_local: str  # alice's, the server's own machine
    host_a: str  # alice's, on node A
    host_b: str  # alice's, on node B
    host_bob: str  # bob's, on node C


@pytest.fixture(scope="session")
def world():
    # Two API replicas (tests/cluster/test_replicas.py holds clients to each). Five
    # "machines" share two cores here: the hosts' runner pools do not grow past one
    # (a pool that grows starts Ray workers that slow the nodes other tests start).
    server = Server(env={"OMNIGENT_RUNNER_POOL_HIGH": "1", "OMNIGENT_API_REPLICAS": "2"}).start()
    started: list = []
    try:
        bob_token = server.create_token("bob")
        alice, bob = server.client(server.token), server.client(bob_token)
        node_a = RayNode(server, "127.0.0.11", make_home("node-a"))
        started.append(node_a)
        node_a.wait_started()
        node_b = RayNode(server, "127.0.0.12", make_home("node-b"))
        started.append(node_b)
        node_b.wait_started()
        node_bob = RayNode(
            server, "127.0.0.13", make_home("bob"), join_key=server.join_key_of("bob")
        )
        started.append(node_bob)
        node_bob.wait_started()
        ids = [node_a.wait_host(alice), node_b.wait_host(alice), node_bob.wait_host(bob)]
        yield World(
            server, alice, bob, server.client(None), node_a, node_b, node_bob, server.host_id, *ids
        )
    finally:
        for proc in reversed(started):
            proc.kill()
        server.stop()
