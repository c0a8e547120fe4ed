"""`ray up cluster.yaml` as the README says, onto two loopback machines behind a private
sshd (127.0.0.2 the head, 127.0.0.3 a worker, each with a HOME of its own): the
repository's cluster.yaml with only the addresses, the SSH user and the key changed.

Cold `ray up`: Ray with token auth, the API on the head, the worker an online host with no
other command, a shell command through a runner on the worker (with the worker's HOME);
a second `ray up` keeps the session and its runner; `ray down` leaves nothing running on
either machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.machines import LoopbackMachines, sshd_available

ROOT = Path(__file__).resolve().parents[2]
HEAD, WORKER = "127.0.0.2", "127.0.0.3"
API = f"http://{HEAD}:6767"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        not sshd_available(),
        reason="needs sshd and rsync (.ci/run installs openssh-server and rsync)",
    ),
]


def _config(machines: LoopbackMachines, path: Path) -> Path:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["provider"]["head_ip"] = HEAD
    config["provider"]["worker_ips"] = [WORKER]
    config["min_workers"] = config["max_workers"] = 1
    config["auth"] = machines.auth()
    path.write_text(yaml.safe_dump(config))
    return path


def _ray(*args: str, timeout: float = 900) -> tuple[float, str]:
    """A `ray` CLI command from the checkout's root, as the README says; its duration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "OMNIGENT_"))}
    env.update(RAY_UP_enable_autoscaler_v2="0", RAY_USAGE_STATS_ENABLED="0")
    t0 = time.monotonic()
    out = subprocess.run(
        [str(Path(sys.executable).with_name("ray")), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    took = time.monotonic() - t0
    assert out.returncode == 0, f"ray {' '.join(args)}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return took, out.stdout + out.stderr


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout}s (last: {last!r})")


def test_ray_up_enrolls_workers_rolls_forward_and_ray_down_cleans_up(tmp_path):
    figures: dict[str, float] = {}
    with LoopbackMachines(cluster_name="omnigent") as machines:
        config = _config(machines, tmp_path / "cluster.yaml")
        head_home, worker_home = machines.home(HEAD), machines.home(WORKER)

        figures["ray_up_cold_s"], out = _ray("up", "-y", str(config))
        token = (head_home / ".omnigent" / "token").read_text().strip()
        api = httpx.Client(base_url=API, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        r = _wait(lambda: api.get("/v1/hosts"), 60, "the head's API")
        assert r.status_code == 200, r.text
        assert f"URL:    {API}" in out  # a reachable address, not 0.0.0.0
        # head fault tolerance (--gcs-ft): the GCS keeps its state in the head's own Redis
        redis_pid = int((head_home / ".omnigent" / "gcs-redis" / "redis.pid").read_text())
        assert b"redis-server" in Path(f"/proc/{redis_pid}/cmdline").read_bytes()

        # Ray's token authentication is on: a driver without the token is refused
        code = f"import ray; ray.init(address='{HEAD}:6379'); print('CONNECTED')"
        stranger = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "RAY_AUTH_MODE": "disabled", "HOME": str(tmp_path)},
        )
        assert "CONNECTED" not in stranger.stdout and stranger.returncode != 0

        # the worker becomes an online host with no other command run
        t0 = time.monotonic()

        def two_online():
            hosts = api.get("/v1/hosts").json()["hosts"]
            online = [h for h in hosts if h["status"] == "online"]
            return online if len(online) == 2 else None

        online = _wait(two_online, 600, "the worker as an online host")
        figures["worker_online_after_ray_up_s"] = time.monotonic() - t0
        node_ips = json.loads((worker_home / ".omnigent" / "ray-node.json").read_text())
        assert node_ips["node_ip"] == WORKER
        worker = next(h for h in online if _host_home(api, h["id"]) == str(worker_home))

        # a runner on the worker runs a shell command there, with the worker's HOME
        s = api.post(
            "/v1/sessions",
            json={"agent": {"name": "e2e"}, "host_id": worker["id"], "workspace": str(worker_home)},
        )
        assert s.status_code == 201, s.text
        s = s.json()
        assert s["status"] == "running"
        shell = f"/v1/sessions/{s['id']}/resources/environments/default/shell"
        r = api.post(shell, json={"command": "echo $HOME; touch made-by-agent"})
        assert r.status_code == 200 and r.json()["stdout"] == f"{worker_home}\n", r.text
        assert (worker_home / "made-by-agent").exists()

        # `ray up` again: the server rolls forward (or is adopted), the session stays
        gaps, stop = [], threading.Event()
        poller = threading.Thread(target=_poll, args=(token, s["id"], gaps, stop))
        poller.start()
        try:
            figures["ray_up_warm_s"], _ = _ray("up", "-y", str(config))
            time.sleep(2)
        finally:
            stop.set()
            poller.join()
        figures["answer_gap_during_second_ray_up_s"] = max(gaps, default=0.0)
        after = api.get(f"/v1/sessions/{s['id']}").json()
        assert after["status"] == "running" and after["runner_id"] == s["runner_id"], after
        r = api.post(shell, json={"command": "ls made-by-agent"})
        assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
        assert two_online()

        # `ray down`: the server first, then every node omnigent started, nothing else
        figures["ray_down_s"], _ = _ray("down", "-y", str(config))
        try:
            httpx.get(API + "/healthz", timeout=3)
            raise AssertionError("the API still answers after ray down")
        except httpx.TransportError:
            pass
        left = _wait(
            lambda: not machines.processes() or None, 60, "no process left on either machine"
        )
        assert left
        print("figures:", json.dumps({k: round(v, 1) for k, v in figures.items()}))


def _host_home(api: httpx.Client, host_id: str) -> str | None:
    """The HOME a host expands `~` to (its listing of `~` names the home's entries)."""
    r = api.get(f"/v1/hosts/{host_id}/filesystem/~", params={"limit": 1})
    if r.status_code != 200 or not r.json()["data"]:
        return None
    return os.path.dirname(r.json()["data"][0]["path"])


def _poll(token: str, session_id: str, gaps: list, stop: threading.Event) -> None:
    """The longest time without a successful answer while `ray up` runs again."""
    last_ok = time.monotonic()
    with httpx.Client(base_url=API, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        while not stop.is_set():
            try:
                ok = c.get(f"/v1/sessions/{session_id}").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                gaps.append(time.monotonic() - last_ok)
                last_ok = time.monotonic()
            time.sleep(0.1)
