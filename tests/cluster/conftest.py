"""One real cluster for the whole test session: `omnigent serve` (embedded Ray head),
two more Ray nodes on this machine (127.0.0.11 and 127.0.0.12, each with a HOME of its
own, standing in for two machines), and host daemons for two users.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.procs import Daemon, RayNode, Server, make_home

pytestmark = pytest.mark.cluster


@dataclass
class World:
    server: Server
    alice: httpx.Client       # the server's local user
    bob: httpx.Client
    anon: httpx.Client
    node_a: RayNode
    node_b: RayNode
    host_local: str           # alice's, the server's own machine
    host_a: str               # alice's, on node A
    host_b: str               # alice's, on node B
    host_bob: str             # bob's, on node B
    daemons: dict


@pytest.fixture(scope="session")
def world():
    server = Server().start()
    started: list = []
    daemons: dict = {}
    try:
        node_a = RayNode(server, "127.0.0.11", make_home("node-a"))
        started.append(node_a)
        node_a.wait_started()
        node_b = RayNode(server, "127.0.0.12", make_home("node-b"))
        started.append(node_b)
        node_b.wait_started()
        bob_token = server.create_token("bob")
        daemons = {
            "a": Daemon(server, server.token, node_a.ip, node_a.home),
            "b": Daemon(server, server.token, node_b.ip, node_b.home),
            "bob": Daemon(server, bob_token, node_b.ip, make_home("bob")),
        }
        started += list(daemons.values())
        ids = {k: d.wait_registered() for k, d in daemons.items()}
        alice = server.client(server.token)
        local = [h["id"] for h in alice.get("/v1/hosts").json()["hosts"]
                 if h["id"] not in ids.values()]
        yield World(server, alice, server.client(bob_token), server.client(None),
                    node_a, node_b, local[0], ids["a"], ids["b"], ids["bob"], daemons)
    finally:
        # tests may have replaced daemons (restarts): stop the ones in `daemons` too
        for proc in [*daemons.values(), *reversed(started)]:
            proc.stop() if isinstance(proc, Daemon) else proc.kill()
        server.stop()
