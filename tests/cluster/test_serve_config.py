"""The API deployed the Ray way: `serve run serve_config.yaml` (the repository's file,
with only the port changed) on a running cluster with token auth. It starts the
ControlActor itself (no `omnigent serve` ran), serves the API on the config's port with
the config's two replicas, and enrolls the head as the admin's online host."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import yaml

from tests.procs import BIN, Proc, RayHead, Server, base_env, free_port, make_home

HEAD_IP = "127.0.0.31"
CONFIG = Path(__file__).resolve().parents[2] / "serve_config.yaml"


def test_serve_run_of_the_config_file_serves_the_api():
    # One user runs the head and deploys (Serve builds the app on the cluster: the state
    # dir is that of the head's user)
    home = make_home("serve-cfg")
    head = RayHead(HEAD_IP, home)
    port = free_port()
    config = yaml.safe_load(CONFIG.read_text())
    app = config["applications"][0]
    assert app["import_path"] == "serve_app:build"
    assert app["deployments"][0]["num_replicas"] == 2
    app["args"]["port"] = port
    app["args"]["host"] = "127.0.0.1"
    path = Path(home, "serve_config.yaml")
    path.write_text(yaml.safe_dump(config))
    env = base_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(head.token_file))
    run = Proc(
        [str(BIN / "serve"), "run", f"--address={head.address}", str(path)],
        env,
        "serve run",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert run.popen.poll() is None, "\n".join(run.lines[-40:])
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "\n".join(run.lines[-40:])
            time.sleep(0.5)
        token = Path(home, ".omnigent", "token").read_text().strip()
        alice = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        assert httpx.get(url + "/v1/hosts").status_code == 401  # no listener without auth
        deadline = time.monotonic() + 60
        while True:
            hosts = alice.get("/v1/hosts").json()["hosts"]
            if hosts and hosts[0]["status"] == "online":
                break
            assert time.monotonic() < deadline, hosts
            time.sleep(0.5)
        replicas = set()
        for _ in range(200):  # new connections, spread over the replicas by the kernel
            replicas.add(httpx.get(url + "/healthz", timeout=5).json()["replica"])
            if len(replicas) == 2:
                break
        assert len(replicas) == 2, replicas
    finally:
        run.stop(signal.SIGINT, timeout=60)  # Ctrl-C: serve run removes the application
        Server(home=home).cli("stop", "--address", head.address, check=False)
        head.kill()
