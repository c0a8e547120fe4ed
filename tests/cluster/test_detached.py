"""`omnigent serve --address` on a running Ray cluster: the server outlives the process
that deployed it (even SIGKILLed), a second `omnigent serve` adopts it, one of another
code version rolls it forward keeping sessions, bindings and runners, and `omnigent stop`
stops it, runners included."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from tests.cluster.helpers import new_session, pid_alive
from tests.procs import BIN, Proc, RayHead, Server, base_env, make_home

HEAD_IP = "127.0.0.30"


def _serve(server: Server, head: RayHead, version: str = "v1", **env: str) -> Proc:
    # The code version is pinned: "another version" must not depend on edits of the
    # checkout while the test runs.
    env["OMNIGENT_CODE_VERSION"] = version
    return Proc(
        [
            str(BIN / "omnigent"),
            "serve",
            "--address",
            head.address,
            "--port",
            str(server.port),
            "--node-ip-address",
            HEAD_IP,
        ],
        base_env(server.home, RAY_AUTH_TOKEN_PATH=str(head.token_file), **env),
        "serve --address",
    )


def test_detached_server_adopt_upgrade_stop():
    head = RayHead(HEAD_IP, make_home("head"))
    server = Server(env={"RAY_AUTH_TOKEN_PATH": str(head.token_file)})
    try:
        # deploy, and SIGKILL the deployer the moment it says the server is up
        first = _serve(server, head)
        first.wait_for(r"omnigent server started", 240)
        first.signal_group(signal.SIGKILL)
        first.popen.wait(10)
        with open(f"{server.home}/.omnigent/token") as f:
            token = f.read().strip()
        alice = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        for _ in range(20):  # answering well after the driver is gone
            r = alice.get("/v1/hosts")
            assert r.status_code == 200 and r.json()["hosts"][0]["status"] == "online"
            time.sleep(0.5)
        host = r.json()["hosts"][0]["id"]
        s = new_session(alice, host_id=host, workspace=make_home("ws"))
        runner = alice.get(f"/v1/runners/{s['runner_id']}").json()

        again = _serve(server, head)
        again.wait_for(r"omnigent server adopted", 120)
        assert again.popen.wait(60) == 0
        assert alice.get(f"/v1/sessions/{s['id']}").json()["status"] == "running"

        # another version: rolled forward while a client keeps asking
        gaps, stop = [], threading.Event()

        def poll() -> None:
            last_ok = time.monotonic()
            with httpx.Client(
                base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
            ) as c:
                while not stop.is_set():
                    try:
                        ok = c.get(f"/v1/sessions/{s['id']}").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    now = time.monotonic()
                    if ok:
                        gaps.append(now - last_ok)
                        last_ok = now
                    time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            upgrade = _serve(server, head, version="v2")
            upgrade.wait_for(r"omnigent server upgraded", 240)
            assert upgrade.popen.wait(60) == 0
            time.sleep(2)
        finally:
            stop.set()
            poller.join()
        print(f"longest answer gap while rolling forward: {max(gaps):.2f}s")
        after = alice.get(f"/v1/sessions/{s['id']}").json()
        assert after["status"] == "running" and after["runner_id"] == s["runner_id"]
        assert pid_alive(runner["pid"])
        r = alice.post(
            f"/v1/sessions/{s['id']}/resources/environments/default/shell",
            json={"command": "echo still-here"},
        )
        assert r.status_code == 200 and r.json()["stdout"] == "still-here\n", r.text
        assert alice.get(f"/v1/hosts/{host}").json()["status"] == "online"

        out = server.cli("stop")
        assert "server stopped" in out
        try:
            httpx.get(server.url + "/healthz", timeout=3)
            raise AssertionError("the API still answers after `omnigent stop`")
        except httpx.TransportError:
            pass
        deadline = time.monotonic() + 15
        while pid_alive(runner["pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_alive(runner["pid"])
        # nothing of it is left: the next deploy starts a server, it adopts nothing
        fresh = _serve(server, head)
        fresh.wait_for(r"omnigent server started", 240)
        assert fresh.popen.wait(60) == 0
        assert alice.get(f"/v1/sessions/{s['id']}").json()["status"] == "runner_exited"
        assert "server stopped" in server.cli("stop")
    finally:
        server.cli("stop", check=False)
        head.kill()
