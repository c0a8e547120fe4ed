"""Two API replicas share the server's port (the world's server runs two): a client whose
consecutive requests reach different replicas sees the same answers and its own writes,
whichever replica took them: hosts and their runner counts, uploads, environment writes,
terminals attached through either replica, deletions.

Each helper here pins one keep-alive connection to a chosen replica (new connections
until `/healthz` names it), so the alternation is certain, not left to the kernel's
spreading of connections."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

from omnigent.api.deps import FOLLOW_LAG_ENV
from tests.cluster.helpers import env_url, launch, make_workspace, new_session
from tests.cluster.test_files import files_url, upload
from tests.cluster.test_terminals import AGENT_T, Screen, open_term, ws_url
from tests.procs import Server

TRIES = 200  # connections tried to reach a given replica (each ~ms)


def pinned_client(world, token: str, replica: str | None = None) -> tuple[httpx.Client, str]:
    """A client with one keep-alive connection, to `replica` (or whichever answers)."""
    for _ in range(TRIES):
        client = httpx.Client(
            base_url=world.server.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        got = client.get("/healthz").json()["replica"]
        if replica is None or got == replica:
            return client, got
        client.close()
    raise AssertionError(f"no connection reached replica {replica} in {TRIES} tries")


@pytest.fixture(scope="module")
def pair(world):
    """Two clients of alice, each held to another replica."""
    a, first = pinned_client(world, world.server.token)
    for _ in range(TRIES):
        b, second = pinned_client(world, world.server.token)
        if second != first:
            break
        b.close()
    else:
        raise AssertionError("only one API replica answers (two were deployed)")
    yield a, b
    a.close()
    b.close()


def same_replica(client: httpx.Client, expected: str) -> None:
    assert client.get("/healthz").json()["replica"] == expected


def test_two_replicas_answer_on_one_port_and_say_the_same(world, pair):
    a, b = pair
    ra, rb = a.get("/healthz").json()["replica"], b.get("/healthz").json()["replica"]
    assert ra != rb
    for path in ("/v1/hosts", f"/v1/hosts/{world.host_a}", "/v1/sessions?limit=5"):
        assert a.get(path).json() == b.get(path).json(), path
    same_replica(a, ra)  # still on its own replica: the alternation is real
    same_replica(b, rb)


def test_a_launch_through_one_replica_is_seen_at_once_through_the_other(world, pair):
    a, b = pair
    ws = make_workspace(world.node_a.home, {"f.txt": "one\n"})
    before = b.get(f"/v1/hosts/{world.host_a}").json()["runner_count"]
    sid = new_session(a)["id"]
    assert b.get(f"/v1/sessions/{sid}").status_code == 200  # created via a, read via b
    r = launch(a, world.host_a, sid, ws)
    assert r.status_code == 200, r.text
    assert b.get(f"/v1/hosts/{world.host_a}").json()["runner_count"] == before + 1
    assert b.get(f"/v1/sessions/{sid}").json()["runner_id"] == r.json()["runner_id"]
    # a write through b, read and listed as changed through a
    w = b.put(env_url(sid, "/filesystem/f.txt"), json={"content": "two\n"})
    assert w.status_code == 200, w.text
    read = a.get(env_url(sid, "/filesystem/f.txt"))
    assert read.status_code == 200 and "two" in read.text
    changes = a.get(env_url(sid, "/changes")).json()
    assert [(c["path"], c["status"]) for c in changes["data"]] == [("f.txt", "modified")]
    # deleted through a: gone through b at once
    assert a.delete(f"/v1/sessions/{sid}").status_code == 200
    assert b.get(f"/v1/sessions/{sid}").status_code == 404
    assert b.get(env_url(sid, "/filesystem/f.txt")).status_code == 404
    deadline = time.monotonic() + 10  # the runner's exit is noticed by its watch
    while b.get(f"/v1/hosts/{world.host_a}").json()["runner_count"] != before:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_uploads_through_either_replica(world, pair):
    a, b = pair
    sid = new_session(a)["id"]
    assert launch(a, world.host_a, sid, make_workspace(world.node_a.home)).status_code == 200
    before = b.get(f"/v1/sessions/{sid}/resources").json()  # cached by b, then changed by a
    data = bytes(range(256)) * 4096  # 1 MiB
    r = upload(a, sid, "blob.bin", data)
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    listed = b.get(files_url(sid)).json()["data"]
    assert [f["id"] for f in listed] == [fid]
    resources = b.get(f"/v1/sessions/{sid}/resources").json()
    assert fid in json.dumps(resources) and fid not in json.dumps(before)
    assert b.get(files_url(sid, f"/{fid}/content")).content == data
    assert b.delete(files_url(sid, f"/{fid}")).status_code == 200
    assert a.get(files_url(sid)).json()["data"] == []
    assert fid not in json.dumps(a.get(f"/v1/sessions/{sid}/resources").json())
    assert a.get(files_url(sid, f"/{fid}")).status_code == 404
    a.delete(f"/v1/sessions/{sid}")


def replica_socket(world, replica: str) -> socket.socket:
    """A TCP connection to the API that `replica` serves (checked with one request)."""
    url = urlsplit(world.server.url)
    for _ in range(TRIES):
        sock = socket.create_connection((url.hostname, url.port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.endswith(b"}"):
            chunk = sock.recv(4096)
            assert chunk, "the API closed the connection"
            raw += chunk
        if json.loads(raw.split(b"\r\n\r\n", 1)[1])["replica"] == replica:
            return sock
        sock.close()
    raise AssertionError(f"no connection reached replica {replica}")


async def attach_via(world, sid: str, tid: str, replica: str) -> Screen:
    ws = await websockets.connect(
        ws_url(world, sid, tid),
        sock=replica_socket(world, replica),
        additional_headers={"Authorization": f"Bearer {world.server.token}"},
        max_size=None,
        open_timeout=20,
    )
    return Screen(ws)


def test_a_terminal_attached_through_either_replica(world, pair):
    a, b = pair
    ra, rb = a.get("/healthz").json()["replica"], b.get("/healthz").json()["replica"]
    ws = make_workspace(world.node_b.home)
    sid = new_session(a, agent=AGENT_T)["id"]
    assert launch(b, world.host_b, sid, ws).status_code == 200
    tid = open_term(a, sid, "replicas")  # declared through a
    listed = b.get(f"/v1/sessions/{sid}/resources/terminals").json()["data"]
    assert [t["id"] for t in listed] == [tid]

    async def go():
        one = await attach_via(world, sid, tid, rb)  # attached through b
        await one.run("echo via-$((40+2))")
        await one.expect(rb"via-42")
        await one.close()
        two = await attach_via(world, sid, tid, ra)  # re-attached through a
        await two.expect(rb"via-42")  # the scrollback
        await two.run("echo again-$((6*7))")
        await two.expect(rb"again-42")
        await two.close()

    asyncio.run(go())
    assert a.delete(f"/v1/sessions/{sid}/resources/terminals/{tid}").status_code == 200
    assert b.get(f"/v1/sessions/{sid}/resources/terminals").json()["data"] == []
    a.delete(f"/v1/sessions/{sid}")


@pytest.fixture(scope="module")
def lagging():
    """A server of its own whose two replicas each take 0.3 s to apply what their
    long-polls bring: a change must not be answered before both have it."""
    server = Server(env={"OMNIGENT_API_REPLICAS": "2", FOLLOW_LAG_ENV: "0.3"}).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_change_is_answered_only_once_every_replica_has_it(lagging):
    world = SimpleNamespace(server=lagging)
    a, ra = pinned_client(world, lagging.token)
    for _ in range(TRIES):
        b, rb = pinned_client(world, lagging.token)
        if rb != ra:
            break
        b.close()
    host = f"/v1/hosts/{lagging.host_id}"
    home = lagging.home
    sid = new_session(a)["id"]
    before = b.get(host).json()["runner_count"]
    assert launch(a, lagging.host_id, sid, make_workspace(home)).status_code == 200
    assert b.get(host).json()["runner_count"] == before + 1
    listed = b.get(f"/v1/sessions/{sid}/resources").json()  # b caches the list
    r = upload(a, sid, "late.txt", b"late")
    assert r.status_code == 201
    assert r.json()["id"] not in json.dumps(listed)
    assert r.json()["id"] in json.dumps(b.get(f"/v1/sessions/{sid}/resources").json())
    assert a.delete(f"/v1/sessions/{sid}").status_code == 200
    a.close()
    b.close()
