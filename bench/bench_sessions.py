"""Sessions: launch latency, memory per session, scale, cold start; our server beside the
reference server (Omnigent 0.19.0), in one run.

    .venv/bin/python bench/bench_sessions.py [--json bench/sessions_results.json]
        [--only launch,memory,scale,cold] [--n 8] [--gap 0] [--k 10] [--idle-wait 0]
        [--sessions 10000] [--active 200] [--no-reference]

Ours is `omnigent serve` embedded (its own single-node Ray cluster, fresh HOME), and every
runner of ours runs on the server's own host (the embedded server's node, the Ray head).
The reference is `omnigent server` + `omnigent host` (single-user mode) on the same box.
Sessions: ours `POST /v1/sessions` (JSON), the reference's multipart (a config.yaml
bundle, REFERENCE_SERVER.md). Both get their own copy of each workspace.

cold    From launching the server command (fresh HOME) to: the first 200 of GET /v1/hosts
        (ours with the bearer token read from $HOME/.omnigent/token as soon as it exists),
        the own host online, and a session's environment answering (a runner launched
        as soon as the host is online, then GET …/environments/default/filesystem polled
        every 10 ms). The reference: `omnigent server`, then `omnigent host` once
        /v1/hosts answers, the same three times from the first command. Then PSS of all
        the server's processes with that one runner, after a 5 s settle. Floor: a bare
        `ray.init(address="local", include_dashboard=False, …)` with the options our
        server's `_init_ray` passes (same token auth, health-check system config, object
        store size): time to return, and the PSS of all its processes after 5 s.
launch  Launch -> ready: a fresh session each time, then `POST /v1/hosts/{id}/runners
        {"session_id", "workspace"[, "git"]}`; from the POST to the first 200 of the
        environment's root listing (polled every 10 ms). p50/p90/max of --n, for (a) a
        plain workspace (200 files, ~4 MiB) and (b) a git repository workspace launched
        with `"git": {"branch_name": "bench-N"}` (a new worktree each time). The POST's
        own time is reported too. Servers alternate launch by launch; --gap seconds
        between launches. The sessions are deleted afterwards.
memory  PSS (/proc/<pid>/smaps_rollup) summed over all the server's processes (its
        process tree plus every process whose HOME is the server's HOME: the
        reference's tmux servers leave the tree) before and after K more sessions, each
        with a runner and one environment request made; (after - before) / K. For each
        server the processes that appeared, by proctitle, with their PSS. Floor: an idle
        Ray actor that imports nothing of ours (`@ray.remote class Idle`, detached,
        num_cpus=0, max_concurrency=100, pinned to the head, max_restarts=0: our runner's
        options) created in our cluster by a driver of its own (own namespace, the
        cluster token): its PSS and ours-per-session / floor. With --idle-wait S (and
        the server started with session_idle_s = --session-idle-s, default S/2 then),
        waits up to S seconds for the SessionActors to be let go, and reports the
        per-session PSS of idle sessions too.
scale   Ours (the reference too with --scale-reference): the server's earlier sessions
        deleted, then 10 sessions (one with a runner and a terminal), then --sessions in
        all, created over HTTP by a pool of 8 threads (the time is reported). p50/p99 of
        GET /v1/sessions?limit=20 (first page, and a page from the middle via `after`)
        and GET /v1/sessions/{id}, with 10 vs with --sessions sessions (--scale-n
        requests each, fewer (>= 20) where they take over 30 s). Then runners
        launched (4 at a time) on stored sessions until --active are active (stopping
        early if MemAvailable falls under --min-free-gib or after --active-budget-s;
        the count reached is reported), 10 s to settle, and p50/p99 of GET /v1/hosts, an environment
        read (1 KiB file) of the first session, and a terminal keystroke echo (WebSocket,
        as bench/bench_terminals.py) compared with the same with one active session.

Every process started here is stopped in `finally` (by process group / pid); never
`ray stop`, never by name. Temporary files go under /tmp/benchA/.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_hosts import (  # noqa: E402
    REF_BIN,
    P,
    all_procs,
    kill_group,
    log,
    proc_tree,
)

from tests.procs import SERVER_IP, Server, base_env, free_port  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning, module="websockets")
warnings.filterwarnings("ignore", message="connect\\(\\) must be used as a context manager")
TMP_ROOT = "/tmp/benchA"
ENV = "/resources/environments/default"
SECTIONS = ("cold", "launch", "memory", "scale")
AGENT = {"name": "bench", "terminals": {"shell": {"command": "bash", "args": ["--norc"]}}}
REF_AGENT = """spec_version: 1
name: bench-agent
executor: {type: omnigent, model: m, config: {harness: open-responses}}
prompt: bench
os_env: {type: caller_process, cwd: ., sandbox: {type: none}}
terminals: {shell: {command: bash, args: [--norc, --noprofile]}}
"""
SETUP = b"stty -icanon -echo min 1 time 0; cat\n"
POLL_S = 0.01
GiB = 2**30
MiB = 2**20


# --- small helpers ----------------------------------------------------------------------
def stats(xs: list[float], nd: int = 3) -> dict:
    """p50/p90/p99/max (inclusive quantiles) of a sample."""
    if not xs:
        return {"n": 0}
    if len(xs) == 1:
        v = round(xs[0], nd)
        return {"p50": v, "p90": v, "p99": v, "max": v, "min": v, "n": 1}
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return {
        "p50": round(q[49], nd),
        "p90": round(q[89], nd),
        "p99": round(q[98], nd),
        "max": round(max(xs), nd),
        "min": round(min(xs), nd),
        "n": len(xs),
    }


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def procs_with_home(home: str) -> list[P]:
    want = f"HOME={home}".encode()
    found = []
    for p in all_procs():
        try:
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                if want in f.read().split(b"\0"):
                    found.append(p)
        except OSError:
            pass
    return found


def title(p: P) -> str:
    cmd = p.cmdline()
    if not cmd:
        return p.name()
    first = cmd[0]
    if first.startswith("ray::"):  # ray::RunnerActor.method while a call runs
        return first.split()[0].split(".")[0]
    text = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(cmd))
    return text[:80]


def snapshot(pids: list[int], home: str | None) -> dict[tuple[int, str], tuple[str, int]]:
    """Every process of a server: {(pid, starttime): (title, PSS bytes)}."""
    seen: dict[int, P] = {}
    for pid in pids:
        for p in proc_tree(pid):
            seen.setdefault(p.pid, p)
    if home:
        for p in procs_with_home(home):
            if p.state != "Z":
                seen.setdefault(p.pid, p)
    out = {}
    for p in seen.values():
        if p.pid == os.getpid():
            continue
        try:
            _rss, pss = p.memory()
            out[(p.pid, p.start)] = (title(p), pss)
        except OSError:
            pass
    return out


def total_mib(snap: dict) -> float:
    return round(sum(v[1] for v in snap.values()) / MiB, 1)


def new_procs(before: dict, after: dict) -> dict:
    """Processes in `after` not in `before`, grouped by title: count, PSS MiB sum / each."""
    groups: dict[str, list[int]] = {}
    for k, (t, pss) in after.items():
        if k not in before:
            groups.setdefault(t, []).append(pss)
    return {
        t: {
            "count": len(v),
            "pss_mib_total": round(sum(v) / MiB, 1),
            "pss_mib_each": round(sum(v) / len(v) / MiB, 1),
        }
        for t, v in sorted(groups.items(), key=lambda kv: -sum(kv[1]))
    }


def gone_procs(before: dict, after: dict) -> dict:
    groups: dict[str, int] = {}
    for k, (t, _pss) in before.items():
        if k not in after:
            groups[t] = groups.get(t, 0) + 1
    return groups


def check(what: str, r: httpx.Response, ok=(200, 201)) -> httpx.Response:
    if r.status_code not in ok:
        raise RuntimeError(f"{what}: {r.status_code} {r.text[:300]}")
    return r


def make_workspace(path: str, files: int = 200) -> str:
    """~200 files in 10 directories, ~4 MiB in all (mostly 10-40 KiB text files)."""
    os.makedirs(path)
    for i in range(files):
        d = os.path.join(path, f"pkg{i % 10}")
        os.makedirs(d, exist_ok=True)
        size = 1024 if i == 0 else 10_000 + (i * 997) % 30_000
        with open(os.path.join(d, f"mod_{i:03d}.py"), "w") as f:
            f.write(f"# bench line {i}\n" * (size // 15))
    with open(os.path.join(path, "read1k.txt"), "w") as f:
        f.write("x" * 1023 + "\n")
    return path


def make_repo(path: str) -> str:
    make_workspace(path)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", "-C", path, *cmd], check=True, env=env, capture_output=True)
    return path


def worktree_count(repo: str) -> int:
    out = subprocess.run(
        ["git", "-C", repo, "worktree", "list", "--porcelain"], capture_output=True, text=True
    ).stdout
    return sum(line.startswith("worktree ") for line in out.splitlines())


# --- the two servers, behind one interface ---------------------------------------------------
class Target:
    name: str
    client: httpx.Client
    host_id: str
    home: str

    def pids(self) -> list[int]:
        raise NotImplementedError

    def new_session(self, client: httpx.Client | None = None) -> str:
        raise NotImplementedError

    def delete_session(self, sid: str) -> int:
        return self.client.delete(f"/v1/sessions/{sid}").status_code

    def launch(self, sid: str, ws: str, git: dict | None = None, client=None) -> httpx.Response:
        body: dict = {"session_id": sid, "workspace": ws}
        if git:
            body["git"] = git
        return (client or self.client).post(f"/v1/hosts/{self.host_id}/runners", json=body)

    def env_root(self, sid: str) -> str:
        return f"/v1/sessions/{sid}{ENV}/filesystem"

    def wait_env(self, sid: str, t0: float, timeout: float = 120, client=None) -> float:
        """Seconds from `t0` to the first 200 of the environment's root listing."""
        c = client or self.client
        url = self.env_root(sid)
        last = None
        while time.perf_counter() - t0 < timeout:
            r = c.get(url)
            if r.status_code == 200:
                return time.perf_counter() - t0
            last = f"{r.status_code} {r.text[:200]}"
            time.sleep(POLL_S)
        raise TimeoutError(f"{self.name}: environment of {sid} not ready: {last}")

    def launch_ready(self, ws: str, git: dict | None = None, client=None) -> dict:
        sid = self.new_session(client)
        t0 = time.perf_counter()
        r = self.launch(sid, ws, git, client)
        post = time.perf_counter() - t0
        check(f"{self.name} launch", r)
        ready = self.wait_env(sid, t0, client=client)
        return {"sid": sid, "post_s": post, "ready_s": ready, "answer": r.json()}


class Ours(Target):
    name = "ours"

    def __init__(self, home: str, env: dict) -> None:
        self.home = home
        self.server = Server(home=home, env=env)
        self.client = None  # type: ignore[assignment]
        self.cold: dict = {}

    def start(self) -> None:
        """Start `omnigent serve` and time it (see ColdWatch)."""
        s = self.server
        t0 = time.monotonic()
        watch = ColdWatch(self, t0)
        watch.start()
        log(f"ours: starting `omnigent serve` on {s.url}")
        s.start()
        self.cold["ready_line_s"] = round(time.monotonic() - t0, 3)
        saved = (Path(self.home) / ".omnigent" / "token").read_text().strip()
        s.token = saved  # tests.procs.Server may read a log line as the token
        self.client = s.client(s.token)
        self.host_id = s.host_id
        watch.join(180)
        if watch.error:
            raise RuntimeError(f"ours cold start: {watch.error}")
        self.cold.update(watch.times)
        self.cold_sid = watch.sid
        log(f"ours cold start: {self.cold}")

    def pids(self) -> list[int]:
        return [self.server.proc.popen.pid]

    def new_session(self, client=None, **extra) -> str:
        r = (client or self.client).post(
            "/v1/sessions", json={"title": "bench", "agent": AGENT, **extra}
        )
        return check("ours session", r).json()["id"]

    def stop(self) -> None:
        if self.client:
            self.client.close()
        procs = proc_tree(self.server.proc.popen.pid) if self.server.proc else []
        procs += procs_with_home(self.home)
        self.server.stop()
        deadline = time.monotonic() + 10
        while True:
            left = [p for p in procs if p.alive()]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        for p in left:
            log(f"ours: killing leftover {p.pid} {p.name()}")
            try:
                p.kill()
            except OSError:
                pass


class ColdWatch(threading.Thread):
    """From `t0` (the server command launched): first 200 of GET /v1/hosts, own host
    online, then a session launched and its environment's first 200."""

    def __init__(self, target: Ours, t0: float) -> None:
        super().__init__(daemon=True)
        self.t, self.t0 = target, t0
        self.times: dict = {}
        self.sid = None
        self.error = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            self.error = repr(exc)

    def _run(self) -> None:
        s = self.t.server
        token_file = Path(self.t.home) / ".omnigent" / "token"
        deadline = self.t0 + 180
        with httpx.Client(base_url=s.url, timeout=2) as c:
            while time.monotonic() < deadline:
                if token_file.exists() and (tok := token_file.read_text().strip()):
                    c.headers["Authorization"] = f"Bearer {tok}"
                    try:
                        r = c.get("/v1/hosts")
                    except httpx.HTTPError:
                        r = None
                    if r is not None and r.status_code == 200:
                        now = round(time.monotonic() - self.t0, 3)
                        self.times.setdefault("hosts_200_s", now)
                        online = [h for h in r.json()["hosts"] if h["status"] == "online"]
                        if online:
                            self.times["host_online_s"] = now
                            host_id = online[0]["id"]
                            break
                time.sleep(POLL_S)
            else:
                raise TimeoutError("no online host")
            c.timeout = httpx.Timeout(90)
            r = c.post("/v1/sessions", json={"title": "cold", "agent": AGENT})
            self.sid = check("ours cold session", r).json()["id"]
            ws = self.t.cold_ws
            check(
                "ours cold launch",
                c.post(
                    f"/v1/hosts/{host_id}/runners", json={"session_id": self.sid, "workspace": ws}
                ),
            )
            url = f"/v1/sessions/{self.sid}{ENV}/filesystem"
            while time.monotonic() < deadline:
                if c.get(url).status_code == 200:
                    self.times["env_200_s"] = round(time.monotonic() - self.t0, 3)
                    return
                time.sleep(POLL_S)
            raise TimeoutError("environment never answered")


class Reference(Target):
    name = "reference"

    def __init__(self, home: str) -> None:
        self.home = home
        self.server = self.host = None
        self.client = None  # type: ignore[assignment]
        self.cold: dict = {}

    def start(self, cold_ws: str) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = base_env(self.home, OMNIGENT_LOCAL_SINGLE_USER="1")
        log(f"reference: starting `omnigent server` on {url}")
        t0 = time.monotonic()
        self.server = subprocess.Popen(
            [str(REF_BIN), "server", "--port", str(port), "--no-open"],
            env=env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=open(f"{self.home}/server.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        c = httpx.Client(base_url=url, timeout=90)
        self.client = c
        poll = lambda ok, alive: self._poll(c, t0, ok, alive)  # noqa: E731
        self.cold["hosts_200_s"] = poll(lambda r: True, lambda: self.server.poll() is None)
        self.host = subprocess.Popen(
            [str(REF_BIN), "host", url, "--non-interactive"],
            env=env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=open(f"{self.home}/host.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.cold["host_online_s"] = poll(
            lambda r: any(h.get("status") == "online" for h in r.json()["hosts"]),
            lambda: self.host.poll() is None,
        )
        self.host_id = c.get("/v1/hosts").json()["hosts"][0]["host_id"]
        sid = self.new_session()
        check("reference cold launch", self.launch(sid, cold_ws))
        self.wait_env(sid, time.perf_counter())
        self.cold["env_200_s"] = round(time.monotonic() - t0, 3)
        self.cold_sid = sid
        log(f"reference cold start: {self.cold}")

    @staticmethod
    def _poll(c: httpx.Client, t0: float, ok, alive, timeout: float = 120) -> float:
        while time.monotonic() - t0 < timeout:
            if not alive():
                raise RuntimeError("a reference process exited while starting")
            try:
                r = c.get("/v1/hosts", timeout=2)
                if r.status_code == 200 and ok(r):
                    return round(time.monotonic() - t0, 3)
            except httpx.HTTPError:
                pass
            time.sleep(POLL_S)
        raise TimeoutError("reference did not come up")

    def pids(self) -> list[int]:
        return [p.pid for p in (self.server, self.host) if p]

    def new_session(self, client=None) -> str:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            data = REF_AGENT.encode()
            info = tarfile.TarInfo("config.yaml")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        r = (client or self.client).post(
            "/v1/sessions",
            files={
                "metadata": (None, json.dumps({"title": "bench"}), "application/json"),
                "bundle": ("bundle.tar.gz", buf.getvalue(), "application/gzip"),
            },
        )
        return check("reference session", r).json()["session_id"]

    def stop(self) -> None:
        if self.client:
            self.client.close()
        extra = procs_with_home(self.home)
        kill_group(self.host, "reference host")
        kill_group(self.server, "reference server")
        for p in extra:
            if p.alive():
                try:
                    p.kill()
                except OSError:
                    pass


# --- the floors ------------------------------------------------------------------------------
RAY_FLOOR = r"""
import os, sys, time
t0 = time.monotonic()
import ray
ray.init(address="local", namespace="bench_floor", include_dashboard=False,
         log_to_driver=False, configure_logging=True, logging_level="WARNING",
         _system_config={"health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
                         "health_check_failure_threshold": 3,
                         "health_check_initial_delay_ms": 1000},
         object_store_memory=int(sys.argv[1]), _node_ip_address=sys.argv[2])
print("READY", time.monotonic() - t0, flush=True)
time.sleep(3600)
"""

IDLE_ACTOR = r"""
import os, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=sys.argv[1], namespace="bench_floor", log_to_driver=False,
         logging_level="WARNING", _node_ip_address=sys.argv[2])

@ray.remote(num_cpus=0)
class Idle:
    def pid(self):
        return os.getpid()

node = ray.get_runtime_context().get_node_id()
a = Idle.options(name="bench_idle_floor", lifetime="detached", num_cpus=0,
                 max_concurrency=100, max_restarts=0,
                 scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
print("PID", ray.get(a.pid.remote(), timeout=120), flush=True)
"""


def ray_floor(tmp: str, object_store: int) -> dict:
    """A bare embedded Ray (our `_init_ray` options): time to return, PSS after 5 s."""
    home = os.path.join(tmp, "ray-floor")
    os.makedirs(home)
    tok = os.path.join(home, "ray_token")
    Path(tok).write_text(os.urandom(32).hex())
    env = base_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=tok)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", RAY_FLOOR, str(object_store), SERVER_IP],
        env=env,
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=open(os.path.join(home, "err.log"), "w"),
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        wall = time.monotonic() - t0
        if not line.startswith("READY"):
            raise RuntimeError(f"ray floor: {line!r} {Path(home, 'err.log').read_text()[-500:]}")
        time.sleep(5)
        snap = snapshot([proc.pid], home)
        out = {
            "init_s": round(float(line.split()[1]), 3),
            "command_to_ready_s": round(wall, 3),
            "pss_mib": total_mib(snap),
            "processes": len(snap),
            "by_process": new_procs({}, snap),
        }
        log(f"bare ray.init floor: {out['init_s']} s, {out['pss_mib']} MiB PSS")
        return out
    finally:
        procs = proc_tree(proc.pid)
        kill_group(proc, "ray floor")
        for p in procs:
            if p.alive():
                try:
                    p.kill()
                except OSError:
                    pass


def idle_actor_floor(ours: Ours) -> dict:
    """An idle detached actor (our runner's options) in our cluster: its PSS."""
    s = ours.server
    env = base_env(os.path.join(ours.home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=s.ray_token)
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", IDLE_ACTOR, s.ray_address, SERVER_IP],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=TMP_ROOT,
    )
    created = time.monotonic() - t0
    pid = next((int(ln.split()[1]) for ln in out.stdout.splitlines() if ln.startswith("PID")), 0)
    if not pid:
        raise RuntimeError(f"idle actor: {out.stdout[-500:]} {out.stderr[-1500:]}")
    time.sleep(3)
    p = P(pid)
    rss, pss = p.memory()
    res = {
        "pid": pid,
        "title": title(p),
        "pss_mib": round(pss / MiB, 1),
        "rss_mib": round(rss / MiB, 1),
        "driver_run_s": round(created, 2),
    }
    log(f"idle actor floor: {res}")
    return res


# --- sections -----------------------------------------------------------------------------------
def section_cold(result: dict, ours: Ours, ref: Reference | None, floor: dict) -> None:
    time.sleep(5)
    out = {"ours": dict(ours.cold), "ray_init_floor": floor}
    snap = snapshot(ours.pids(), ours.home)
    out["ours"]["pss_mib_one_runner"] = total_mib(snap)
    out["ours"]["processes"] = len(snap)
    out["ours"]["by_process"] = new_procs({}, snap)
    if ref:
        out["reference"] = dict(ref.cold)
        rs = snapshot(ref.pids(), ref.home)
        out["reference"]["pss_mib_one_runner"] = total_mib(rs)
        out["reference"]["processes"] = len(rs)
        out["reference"]["by_process"] = new_procs({}, rs)
    result["cold"] = out


def section_launch(args, result: dict, targets: list[Target], ws: dict, repos: dict) -> None:
    out: dict = {}
    made: dict[str, list[str]] = {t.name: [] for t in targets}
    git_ok = {t.name: True for t in targets}
    notes: dict = {}
    try:
        for kind in ("plain", "git"):
            raw: dict = {t.name: {"post_s": [], "ready_s": []} for t in targets}
            for i in range(args.n):
                for t in targets:
                    if kind == "git" and not git_ok[t.name]:
                        continue
                    if kind == "plain":
                        r = t.launch_ready(ws[t.name])
                    else:
                        before = worktree_count(repos[t.name])
                        try:
                            r = t.launch_ready(repos[t.name], {"branch_name": f"bench-{i}"})
                        except (RuntimeError, TimeoutError) as exc:
                            git_ok[t.name] = False
                            notes[f"{t.name}_git"] = f"unsupported: {exc}"[:400]
                            log(f"{t.name}: git launch failed: {exc}")
                            continue
                        added = worktree_count(repos[t.name]) - before
                        if added != 1:
                            git_ok[t.name] = False
                            notes[f"{t.name}_git"] = (
                                f"launch answered but {added} worktrees were added "
                                f"(answer {r['answer']}); not counted"
                            )
                            log(f"{t.name}: {notes[f'{t.name}_git']}")
                            made[t.name].append(r["sid"])
                            continue
                    made[t.name].append(r["sid"])
                    raw[t.name]["post_s"].append(r["post_s"])
                    raw[t.name]["ready_s"].append(r["ready_s"])
                    if args.gap:
                        time.sleep(args.gap)
                log(
                    f"launch {kind} {i + 1}/{args.n}: "
                    + ", ".join(
                        f"{n} {v['ready_s'][-1]:.3f}s" for n, v in raw.items() if v["ready_s"]
                    )
                )
            out[kind] = {
                n: {
                    "post_ms": stats([x * 1000 for x in v["post_s"]], 1),
                    "ready_ms": stats([x * 1000 for x in v["ready_s"]], 1),
                    "samples_ready_ms": [round(x * 1000, 1) for x in v["ready_s"]],
                }
                for n, v in raw.items()
                if v["ready_s"]
            }
    finally:
        for t in targets:
            codes = [t.delete_session(sid) for sid in made[t.name]]
            notes[f"{t.name}_delete_status"] = sorted(set(codes))
    out["notes"] = notes
    out["runner_placement"] = "ours: the embedded server's own host (its Ray head node)"
    result["launch"] = out


def section_memory(args, result: dict, targets: list[Target], ws: dict, ours: Ours | None) -> None:
    out: dict = {}
    made: dict[str, list[str]] = {t.name: [] for t in targets}
    time.sleep(3)
    before = {t.name: snapshot(t.pids(), t.home) for t in targets}
    for _ in range(args.k):
        for t in targets:
            r = t.launch_ready(ws[t.name])
            made[t.name].append(r["sid"])
            check(
                f"{t.name} env read",
                t.client.get(f"/v1/sessions/{r['sid']}{ENV}/filesystem/read1k.txt"),
            )
    log(f"memory: {args.k} sessions launched on each server; settling 5 s")
    time.sleep(5)
    after = {t.name: snapshot(t.pids(), t.home) for t in targets}
    for t in targets:
        b, a = total_mib(before[t.name]), total_mib(after[t.name])
        out[t.name] = {
            "pss_mib_before": b,
            "pss_mib_after": a,
            "processes_before": len(before[t.name]),
            "processes_after": len(after[t.name]),
            "per_session_mib": round((a - b) / args.k, 1),
            "new_processes": new_procs(before[t.name], after[t.name]),
            "gone_processes": gone_procs(before[t.name], after[t.name]),
        }
    if args.idle_wait:
        log(
            f"memory: waiting up to {args.idle_wait}s for idle sessions (session_idle_s "
            f"{args.session_idle_s})"
        )
        t0 = time.monotonic()
        deadline = t0 + args.idle_wait
        while time.monotonic() < deadline:
            if ours is not None:
                live = sum(
                    1 for t, _ in snapshot(ours.pids(), ours.home).values() if "SessionActor" in t
                )
                if live == 0 and time.monotonic() - t0 > 5:
                    break
            time.sleep(2)
        waited = round(time.monotonic() - t0, 1)
        time.sleep(3)
        for t in targets:
            idle = snapshot(t.pids(), t.home)
            out[t.name]["idle"] = {
                "waited_s": waited,
                "pss_mib": total_mib(idle),
                "per_session_mib": round((total_mib(idle) - total_mib(before[t.name])) / args.k, 1),
                "gone_since_active": gone_procs(after[t.name], idle),
            }
    if ours is not None:  # after the idle wait: its process is one of ours' from now on
        floor = idle_actor_floor(ours)
        out["idle_actor_floor"] = floor
        out["ours"]["per_session_over_floor"] = round(
            out["ours"]["per_session_mib"] / floor["pss_mib"], 2
        )
    out["k"] = args.k
    out["how"] = "sum of PSS over the server's process tree + processes with its HOME"
    result["memory"] = out
    # leave the sessions: the scale section deletes every session of ours; the reference's stay


def timed(client: httpx.Client, url: str, n: int, warm: int = 10, max_s: float = 30) -> list[float]:
    """`n` sequential GETs (after `warm`), or fewer (at least 20) if they take over `max_s`
    seconds in all (a list of 10,000 sessions may take ~0.5 s a request)."""
    for _ in range(warm):
        check(url, client.get(url))
    xs: list[float] = []
    t0 = time.monotonic()
    for _ in range(n):
        if len(xs) >= 20 and time.monotonic() - t0 > max_s:
            break
        s = time.perf_counter()
        r = client.get(url)
        xs.append((time.perf_counter() - s) * 1000)
        check(url, r)
    return xs


def mid_cursor(client: httpx.Client, total: int) -> str:
    """The id at position total // 2 of the desc order."""
    want, seen, after = total // 2, 0, None
    while True:
        q = "/v1/sessions?limit=1000" + (f"&after={after}" if after else "")
        body = check("list", client.get(q)).json()
        ids = [s.get("id") or s.get("session_id") for s in body["data"]]
        if seen + len(ids) > want:
            return ids[want - seen]
        seen += len(ids)
        after = body.get("last_id") or ids[-1]
        if not body.get("has_more"):
            return ids[-1]


class Echo:
    """A WebSocket client attached to a terminal, as bench_terminals.py's, synchronous."""

    def __init__(self, url: str, token: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            max_size=None,
            open_timeout=30,
            close_timeout=2,
        )
        self.drain()
        self.ws.send(SETUP)
        self.drain()

    def drain(self, quiet: float = 0.5) -> None:
        while True:
            try:
                self.ws.recv(timeout=quiet)
            except TimeoutError:
                return

    def echo(self, ch: bytes) -> float:
        t = time.perf_counter()
        self.ws.send(ch)
        while True:
            m = self.ws.recv(timeout=10)
            if isinstance(m, bytes) and ch in m:
                return (time.perf_counter() - t) * 1000

    def sample(self, n: int) -> list[float]:
        letters = [bytes([c]) for c in range(ord("a"), ord("z") + 1)]
        for i in range(20):
            self.echo(letters[i % 26])
        return [self.echo(letters[i % 26]) for i in range(n)]

    def close(self) -> None:
        self.ws.close()


def create_many(t: Target, count: int, workers: int = 8) -> float:
    """`count` idle sessions over HTTP, `workers` threads with a client each: seconds."""
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def one(_i: int) -> str:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = httpx.Client(
                base_url=str(t.client.base_url), headers=t.client.headers, timeout=90
            )
            with lock:
                clients.append(c)
        return t.new_session(c)

    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(workers) as pool:
            for k, _ in enumerate(pool.map(one, range(count))):
                if k and k % 2000 == 0:
                    log(f"{t.name}: {k}/{count} sessions created ({time.monotonic() - t0:.0f}s)")
    finally:
        for c in clients:
            c.close()
    return time.monotonic() - t0


def section_scale(args, result: dict, ours: Ours, ref: Reference | None, ws: dict) -> None:
    out: dict = {"sessions": args.sessions, "created_over": "HTTP, 8 threads"}
    result["scale"] = out  # partial results stay if a step fails
    c = ours.client
    # -- start from an empty store (the earlier sections' sessions go) -------------------------
    ids, after = [], None
    while True:
        body = check(
            "list", c.get("/v1/sessions?limit=1000" + (f"&after={after}" if after else ""))
        ).json()
        ids += [s["id"] for s in body["data"]]
        if not body["has_more"]:
            break
        after = body["last_id"]
    for sid in ids:
        c.delete(f"/v1/sessions/{sid}")
    out["deleted_before"] = len(ids)
    log(f"scale: deleted {len(ids)} earlier sessions of ours")

    probe = ours.launch_ready(ws["ours"])
    sid = probe["sid"]
    r = check(
        "terminal",
        c.post(
            f"/v1/sessions/{sid}/resources/terminals",
            json={"terminal": "shell", "session_key": "bench"},
        ),
    )
    tid = r.json()["id"]
    wurl = ours.server.url.replace("http://", "ws://")
    echo = Echo(f"{wurl}/v1/sessions/{sid}/resources/terminals/{tid}/attach", ours.server.token)
    for _ in range(9):
        ours.new_session()
    targets: list[Target] = [ours]
    if ref is not None and args.scale_reference:
        targets.append(ref)
        have = len(mid_list_all(ref.client))
        create_many(ref, max(0, 10 - have))
    read_url = f"/v1/sessions/{sid}{ENV}/filesystem/read1k.txt"

    def measure_lists(tag: str, total: int) -> None:
        for t in targets:
            first = check("list", t.client.get("/v1/sessions?limit=20")).json()
            any_id = first["data"][len(first["data"]) // 2].get("id") or first["data"][0].get(
                "session_id"
            )
            cur = mid_cursor(t.client, total)
            o = out.setdefault(t.name, {}).setdefault(tag, {})
            o["list_first_page"] = stats(timed(t.client, "/v1/sessions?limit=20", args.scale_n))
            o["list_mid_page"] = stats(
                timed(t.client, f"/v1/sessions?limit=20&after={cur}", args.scale_n)
            )
            o["get_one"] = stats(timed(t.client, f"/v1/sessions/{any_id}", args.scale_n))
            log(f"scale {t.name} {tag}: " + ", ".join(f"{k} p50 {v['p50']}" for k, v in o.items()))

    def measure_active(tag: str) -> None:
        o = out["ours"].setdefault(tag, {})
        o["hosts"] = stats(timed(c, "/v1/hosts", args.scale_n))
        o["env_read"] = stats(timed(c, read_url, args.scale_n))
        o["echo"] = stats(echo.sample(args.scale_n))
        log(
            f"scale ours {tag}: hosts {o['hosts']['p50']}, env read {o['env_read']['p50']}, "
            f"echo {o['echo']['p50']}"
        )

    try:
        measure_lists("at_10", 10)
        measure_active("active_1")
        # -- 10,000 --------------------------------------------------------------------------
        for t in targets:
            secs = create_many(t, args.sessions - 10)
            out.setdefault(t.name, {})["create_s"] = round(secs, 1)
            out[t.name]["create_per_s"] = round((args.sessions - 10) / secs, 1)
            log(f"scale {t.name}: {args.sessions - 10} sessions created in {secs:.1f}s")
        measure_lists(f"at_{args.sessions}", args.sessions)
        # -- active ----------------------------------------------------------------------------
        idle_ids, after = [], None
        while len(idle_ids) < args.active:
            q = "/v1/sessions?limit=1000" + (f"&after={after}" if after else "")
            body = check("list", c.get(q)).json()
            idle_ids += [s["id"] for s in body["data"] if s["status"] == "idle"]
            if not body["has_more"]:
                break
            after = body["last_id"]
        active = 1
        stop_reason = "reached"
        t0 = time.monotonic()
        lock = threading.Lock()
        launch_times: list[float] = []
        stop = threading.Event()
        local = threading.local()
        clients: list[httpx.Client] = []

        def launch_one(s: str) -> None:
            nonlocal active, stop_reason
            if stop.is_set():
                return
            if mem_available() < args.min_free_gib * GiB:
                with lock:
                    stop_reason = f"MemAvailable under {args.min_free_gib} GiB"
                stop.set()
                return
            if time.monotonic() - t0 > args.active_budget_s:
                with lock:
                    stop_reason = f"time budget {args.active_budget_s}s"
                stop.set()
                return
            cl = getattr(local, "c", None)
            if cl is None:
                cl = local.c = httpx.Client(base_url=str(c.base_url), headers=c.headers, timeout=90)
                with lock:
                    clients.append(cl)
            s0 = time.perf_counter()
            check("launch", ours.launch(s, ws["ours"], client=cl))
            ours.wait_env(s, s0, client=cl)
            with lock:
                active += 1
                launch_times.append(time.perf_counter() - s0)
                if active % 25 == 0:
                    log(
                        f"scale: {active} active sessions ({time.monotonic() - t0:.0f}s, "
                        f"MemAvailable {mem_available() / GiB:.1f} GiB)"
                    )

        try:
            with ThreadPoolExecutor(args.launch_workers) as pool:
                list(pool.map(launch_one, idle_ids[: args.active - 1]))
        finally:
            for cl in clients:
                cl.close()
        out["ours"]["active_reached"] = active
        out["ours"]["active_stop_reason"] = stop_reason
        out["ours"]["active_launch_s"] = round(time.monotonic() - t0, 1)
        out["ours"]["active_launch_ready_ms"] = stats([x * 1000 for x in launch_times], 1)
        log(f"scale: {active} active sessions ({stop_reason}); settling 10 s")
        time.sleep(10)
        snap = snapshot(ours.pids(), ours.home)
        out["ours"]["active_pss_mib"] = total_mib(snap)
        out["ours"]["active_processes"] = len(snap)
        out["ours"]["mem_available_gib"] = round(mem_available() / GiB, 1)
        measure_active(f"active_{active}")
        out["active_tag"] = f"active_{active}"
    finally:
        echo.close()
    result["scale"] = out


def mid_list_all(client: httpx.Client) -> list:
    body = check("list", client.get("/v1/sessions?limit=1000")).json()
    return body["data"]


# --- report ---------------------------------------------------------------------------------------
def report(result: dict) -> str:
    lines: list[str] = []
    say = lines.append

    def table(head: list[str], rows: list[list[str]]) -> None:
        say("| " + " | ".join(head) + " |")
        say("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            say("| " + " | ".join(r) + " |")
        say("")

    def f(x, nd=2) -> str:
        return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))

    for name in SECTIONS:
        if name in result:
            try:
                globals()[f"_report_{name}"](result, say, table, f)
            except (KeyError, TypeError, IndexError) as exc:
                say(f"({name}: incomplete, {exc!r})\n")
    if "loadavg_1m" in result:
        say(
            "- 1-minute load average before/after each section (2 cores; other work on the "
            "machine shows here): "
            + ", ".join(
                f"{k} {v['before']:.1f}/{v.get('after', 0):.1f}"
                for k, v in result["loadavg_1m"].items()
            )
        )
    for name, err in result.get("errors", {}).items():
        say(f"- section {name} failed: {err[:300]}")
    return "\n".join(lines)


def _report_cold(result, say, table, f) -> None:
    if True:
        c = result["cold"]
        o, r, fl = c["ours"], c.get("reference", {}), c["ray_init_floor"]
        say("### Cold start (s from the server command) and memory with one runner")
        table(
            ["measure", "ours", "reference", "bare ray.init floor"],
            [
                [
                    "-> first 200 GET /v1/hosts",
                    f(o.get("hosts_200_s")),
                    f(r.get("hosts_200_s")),
                    f(fl["init_s"]) + " (ray.init returns)",
                ],
                ["-> own host online", f(o.get("host_online_s")), f(r.get("host_online_s")), "–"],
                [
                    "-> a session's environment answers",
                    f(o.get("env_200_s")),
                    f(r.get("env_200_s")),
                    "–",
                ],
                [
                    "PSS MiB, all processes, one runner",
                    f(o["pss_mib_one_runner"], 0),
                    f(r.get("pss_mib_one_runner"), 0),
                    f(fl["pss_mib"], 0) + " (no runner)",
                ],
                ["processes", f(o["processes"]), f(r.get("processes")), f(fl["processes"])],
            ],
        )


def _report_launch(result, say, table, f) -> None:
    if True:
        la = result["launch"]
        say(
            "### Launch -> environment ready (ms; POST /v1/hosts/{id}/runners -> first 200 of "
            "the environment root)"
        )
        rows = []
        for kind in ("plain", "git"):
            for n, v in la.get(kind, {}).items():
                rd, po = v["ready_ms"], v["post_ms"]
                rows.append(
                    [
                        f"{kind}",
                        n,
                        f(rd["p50"], 0),
                        f(rd["p90"], 0),
                        f(rd["max"], 0),
                        f(po["p50"], 0),
                        f(po["max"], 0),
                        str(rd["n"]),
                    ]
                )
        table(
            [
                "workspace",
                "server",
                "ready p50",
                "ready p90",
                "ready max",
                "POST p50",
                "POST max",
                "n",
            ],
            rows,
        )
        for k, v in la.get("notes", {}).items():
            say(f"- {k}: {v}")
        say(f"- {la['runner_placement']}")
        say("")


def _report_memory(result, say, table, f) -> None:
    if True:
        m = result["memory"]
        say(f"### Memory per extra active session (PSS, K={m['k']})")
        rows = []
        for n in ("ours", "reference"):
            if n in m:
                v = m[n]
                idle = v.get("idle", {})
                rows.append(
                    [
                        n,
                        f(v["pss_mib_before"], 0),
                        f(v["pss_mib_after"], 0),
                        f(v["per_session_mib"], 1),
                        f(idle.get("per_session_mib"), 1),
                        f(v.get("per_session_over_floor")),
                    ]
                )
        table(
            [
                "server",
                "PSS before MiB",
                "after MiB",
                "per active session MiB",
                "per idle session MiB",
                "ours / idle-actor floor",
            ],
            rows,
        )
        if "idle_actor_floor" in m:
            say(
                f"- idle-actor floor (detached, num_cpus 0, max_concurrency 100, imports "
                f"nothing of ours): {m['idle_actor_floor']['pss_mib']} MiB PSS "
                f"({m['idle_actor_floor']['title']})"
            )
        for n in ("ours", "reference"):
            if n in m:
                np_ = ", ".join(
                    f"{t} ×{d['count']} ({d['pss_mib_each']} MiB each)"
                    for t, d in m[n]["new_processes"].items()
                )
                say(f"- new processes, {n}: {np_}")
        say("")


def _report_scale(result, say, table, f) -> None:
    if True:
        s = result["scale"]
        o = s["ours"]
        big = f"at_{s['sessions']}"
        say(f"### Scale: 10 vs {s['sessions']} stored sessions (ms, p50 / p99; ours)")
        rows = []
        for op in ("list_first_page", "list_mid_page", "get_one"):
            a, b = o["at_10"][op], o.get(big, {}).get(op)
            rows.append(
                [
                    op,
                    f"{a['p50']:.2f} / {a['p99']:.2f}",
                    f"{b['p50']:.2f} / {b['p99']:.2f}" if b else "–",
                    f"{b['p50'] / a['p50']:.2f}x" if b else "–",
                ]
            )
        table(["operation", "10 sessions", f"{s['sessions']} sessions", "ratio p50"], rows)
        if "create_s" in o:
            say(
                f"- {s['sessions'] - 10} sessions created over HTTP (8 threads) in "
                f"{o['create_s']} s ({o['create_per_s']}/s)"
            )
        if "reference" in s:
            rr = s["reference"]
            for op in ("list_first_page", "list_mid_page", "get_one"):
                a, b = rr["at_10"][op], rr.get(big, {}).get(op)
                say(f"- reference {op}: {a['p50']:.2f} -> {b['p50'] if b else '–'} ms p50")
        tag = s.get("active_tag")
        if tag:
            say("")
            say(f"### With {o['active_reached']} active sessions vs 1 (ms, p50 / p99; ours)")
            rows = []
            for op in ("hosts", "env_read", "echo"):
                a, b = o["active_1"][op], o[tag][op]
                rows.append(
                    [
                        op,
                        f"{a['p50']:.2f} / {a['p99']:.2f}",
                        f"{b['p50']:.2f} / {b['p99']:.2f}",
                        f"{b['p50'] / a['p50']:.2f}x",
                    ]
                )
            table(["operation", "1 active", f"{o['active_reached']} active", "ratio p50"], rows)
            say(
                f"- active sessions reached: {o['active_reached']} ({o['active_stop_reason']}) "
                f"in {o['active_launch_s']} s; launch->ready under load "
                f"p50 {o['active_launch_ready_ms'].get('p50')} ms; PSS of all our processes "
                f"{o['active_pss_mib']:.0f} MiB in {o['active_processes']} processes; "
                f"MemAvailable after {o['mem_available_gib']} GiB"
            )


# --- main -----------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help="cold,launch,memory,scale")
    ap.add_argument("--n", type=int, default=8, help="launches per kind and server")
    ap.add_argument("--gap", type=float, default=0.0, help="seconds between launches")
    ap.add_argument("--k", type=int, default=10, help="extra sessions for the memory section")
    ap.add_argument("--idle-wait", type=float, default=0.0, help="wait for idle sessions (s)")
    ap.add_argument(
        "--session-idle-s",
        type=float,
        default=None,
        help="the server's session_idle_s (default: server default, or "
        "idle-wait / 2 with --idle-wait)",
    )
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--active", type=int, default=200)
    ap.add_argument("--launch-workers", type=int, default=4)
    ap.add_argument("--active-budget-s", type=float, default=150)
    ap.add_argument("--min-free-gib", type=float, default=4.0)
    ap.add_argument("--scale-n", type=int, default=200, help="requests per scale operation")
    ap.add_argument(
        "--scale-reference",
        action="store_true",
        help="store the many sessions in the reference too",
    )
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if bad := only - set(SECTIONS):
        ap.error(f"unknown sections: {bad}")
    if args.idle_wait and args.session_idle_s is None:
        args.session_idle_s = max(1.0, args.idle_wait / 2)

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    os.makedirs(TMP_ROOT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="sessions-", dir=TMP_ROOT)
    os.chmod(tmp, 0o755)
    started = time.monotonic()
    result: dict = {
        "args": vars(args),
        "machine": {
            "cpus": os.cpu_count(),
            "mem_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GiB, 1),
            "loadavg_start": os.getloadavg(),
        },
    }
    ours = ref = None
    try:
        names = ["ours"] + ([] if args.no_reference else ["reference"])
        ws = {n: make_workspace(os.path.join(tmp, f"ws-{n}")) for n in names}
        repos = {n: make_repo(os.path.join(tmp, f"repo-{n}", "project")) for n in names}
        cold_ws = {n: make_workspace(os.path.join(tmp, f"ws-cold-{n}"), 20) for n in names}

        floor = ray_floor(tmp, 200 * MiB) if "cold" in only else None

        env = {}
        if args.session_idle_s:
            env["OMNIGENT_SESSION_IDLE_S"] = str(args.session_idle_s)
        ours = Ours(os.path.join(tmp, "home-ours"), env)
        os.makedirs(ours.home)
        os.chmod(ours.home, 0o755)
        ours.cold_ws = cold_ws["ours"]
        ours.start()
        targets: list[Target] = [ours]
        if not args.no_reference:
            ref = Reference(os.path.join(tmp, "home-ref"))
            os.makedirs(ref.home)
            ref.start(cold_ws["reference"])
            targets.append(ref)
        result["ours_settings"] = {"session_idle_s": args.session_idle_s or "default (300)"}

        runs = {
            "cold": lambda: section_cold(result, ours, ref, floor),
            "launch": lambda: section_launch(args, result, targets, ws, repos),
            "memory": lambda: section_memory(args, result, targets, ws, ours),
            "scale": lambda: section_scale(args, result, ours, ref, ws),
        }
        for name in SECTIONS:
            if name in only:
                s0 = time.monotonic()
                load = {"before": os.getloadavg()[0]}
                try:
                    runs[name]()
                except Exception as exc:  # noqa: BLE001 - the other sections still run
                    log(f"section {name} failed: {exc!r}")
                    result.setdefault("errors", {})[name] = repr(exc)[:2000]
                result.setdefault("section_s", {})[name] = round(time.monotonic() - s0, 1)
                load["after"] = os.getloadavg()[0]
                result.setdefault("loadavg_1m", {})[name] = load
        result["wall_s"] = round(time.monotonic() - started, 1)
        text = report(result)
        print()
        print(text)
        print(f"\nwhole run: {result['wall_s']} s")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
            print(f"wrote {args.json}")
        return 0
    finally:
        log("stopping everything started here")
        if ref:
            ref.stop()
        if ours:
            ours.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"done after {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
