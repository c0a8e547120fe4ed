"""The control plane under a write burst: `GET /v1/sessions/{id}` while 1,000 sessions are
created, ours beside the reference server (Omnigent 0.19.0) in one run.

    .venv/bin/python bench/bench_control.py [--burst 1000] [--concurrency 32]
        [--idle-n 1000] [--settle 10] [--slow-fsync-ms 0] [--label after]
        [--no-reference] [--json bench/control_results.json]

For each server:
  idle   --idle-n sequential keep-alive `GET /v1/sessions/{id}` (one session made before),
         and beside it, in a second thread, `GET /v1/hosts` (same count): p50/p99.
  burst  --burst `POST /v1/sessions` at --concurrency in flight (asyncio + httpx, in a
         process of its own so that its CPU and GIL do not slow the probes' thread), and
         meanwhile the same two probes, sequential, until the burst ends: p50/p99/max,
         the ratio burst p99 / idle p99 (target <= 3x), the creations' own latency and
         rate. Ours only: the CPU seconds (utime + stime from /proc/<pid>/stat) of the
         ControlActor's process during each phase (found by its title, ray::ControlActor),
         also per actor call (the creations and the session GETs: the API answers
         `GET /v1/hosts` from its own mirror of the host table).
Ours is `omnigent serve` embedded (fresh HOME, default API replicas: one per core); ours
creates with JSON, the reference with multipart (a config.yaml bundle, see
shared/REFERENCE_SERVER.md). The client runs on the same 2-core box as the servers.

--slow-fsync-ms M simulates a slow disk for our store: tests/slow_fsync.c, compiled here
and LD_PRELOADed into our server (every Ray process inherits it), makes each fsync or
fdatasync of a file whose path contains "omnigent.db" sleep M ms first (SQLite in WAL
mode with synchronous=FULL syncs the WAL once per commit). The reference is not slowed.

--label names the run in the JSON file, which keeps the other labels already in it (run
once with the code before a change, `--label before`, and once after).

Every process started here is stopped in `finally` (by process group / pid); never
`ray stop`, never by name.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing as mp
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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_hosts import REF_BIN, all_procs, fix_token, kill_group, log, proc_tree  # noqa: E402
from bench_hosts import start_reference as start_ref  # noqa: E402
from bench_sessions import AGENT, REF_AGENT  # noqa: E402

from tests.procs import Server  # noqa: E402

WARMUP = 50
TICK = os.sysconf("SC_CLK_TCK")


def stats(xs: list[float]) -> dict:
    if len(xs) < 2:
        return {"n": len(xs)}
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return {
        "p50": round(q[49], 2),
        "p90": round(q[89], 2),
        "p99": round(q[98], 2),
        "max": round(max(xs), 2),
        "n": len(xs),
    }


def ref_bundle() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = REF_AGENT.encode()
        info = tarfile.TarInfo("config.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def create_kwargs(kind: str) -> dict:
    """The request body of one session creation."""
    if kind == "ours":
        return {"json": {"title": "bench", "agent": AGENT}}
    return {
        "files": {
            "metadata": (None, json.dumps({"title": "bench"}), "application/json"),
            "bundle": ("bundle.tar.gz", ref_bundle(), "application/gzip"),
        }
    }


def session_id(kind: str, body: dict) -> str:
    return body["id"] if kind == "ours" else body["session_id"]


# --- the burst, in a process of its own -------------------------------------------------------
def burst_main(url: str, headers: dict, kind: str, n: int, conc: int, started, out) -> None:
    """`n` creations, `conc` in flight; puts (latencies ms, failures, wall s) on `out`."""

    async def run() -> tuple[list[float], list[str], float]:
        lat: list[float] = []
        bad: list[str] = []
        todo = iter(range(n))
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=120, limits=limits
        ) as c:
            kw = create_kwargs(kind)

            async def worker() -> None:
                for _ in todo:
                    t0 = time.perf_counter()
                    try:
                        r = await c.post("/v1/sessions", **kw)
                        ok = r.status_code in (200, 201)
                        if not ok:
                            bad.append(f"{r.status_code} {r.text[:100]}")
                    except httpx.HTTPError as exc:
                        bad.append(repr(exc)[:100])
                        continue
                    lat.append((time.perf_counter() - t0) * 1000)

            started.set()
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conc)))
            return lat, bad, time.perf_counter() - t0

    out.put(asyncio.run(run()))


# --- probes ------------------------------------------------------------------------------------
class Probe(threading.Thread):
    """Sequential GETs of `path` over one keep-alive client until `stop` (or `limit`)."""

    def __init__(self, url: str, headers: dict, path: str, stop: threading.Event, limit=0):
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, headers=headers, timeout=120)
        self.path, self.stop_ev, self.limit = path, stop, limit
        self.lat: list[float] = []
        self.errors: list[str] = []
        self.ready, self.go = threading.Event(), threading.Event()

    def run(self) -> None:
        for _ in range(WARMUP):
            try:
                self.client.get(self.path)
            except httpx.HTTPError:
                pass
        self.ready.set()
        self.go.wait()
        while not self.stop_ev.is_set() and (not self.limit or len(self.lat) < self.limit):
            t0 = time.perf_counter()
            try:
                r = self.client.get(self.path)
            except httpx.HTTPError as exc:
                self.errors.append(repr(exc)[:100])
                continue
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code == 200:
                self.lat.append(ms)
            else:
                self.errors.append(f"{r.status_code} {r.text[:100]}")
        self.client.close()


def slow_fsync_env(tmp: str, ms: float) -> dict:
    """The environment that makes our store's syncs take `ms` longer (see the docstring)."""
    lib = os.path.join(tmp, "slow_fsync.so")
    src = str(ROOT / "tests" / "slow_fsync.c")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", lib, src, "-ldl"], check=True)
    return {
        "LD_PRELOAD": lib,
        "SLOW_FSYNC_MS": str(int(ms)),
        "SLOW_FSYNC_MATCH": "omnigent.db",
    }


def control_pid(server_pid: int) -> int | None:
    """The ControlActor's worker process (its title is ray::ControlActor[.method])."""
    for p in proc_tree(server_pid) + all_procs():
        cmd = p.cmdline()
        if cmd and cmd[0].startswith("ray::ControlActor"):
            return p.pid
    return None


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(kind: str, url: str, headers: dict, args, ctl_pid: int | None) -> dict:
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        r = c.post("/v1/sessions", **create_kwargs(kind))
        assert r.status_code in (200, 201), r.text
        sid = session_id(kind, r.json())
    paths = {"get_session": f"/v1/sessions/{sid}", "list_hosts": "/v1/hosts"}
    out: dict = {}

    # idle: both probes side by side, --idle-n requests each
    stop = threading.Event()
    probes = {k: Probe(url, headers, p, stop, args.idle_n) for k, p in paths.items()}
    for p in probes.values():
        p.start()
    for p in probes.values():
        p.ready.wait()
    cpu0, t0 = cpu_seconds(ctl_pid), time.monotonic()
    for p in probes.values():
        p.go.set()
    for p in probes.values():
        p.join()
    out["idle"] = {k: stats(p.lat) for k, p in probes.items()}
    out["idle"]["wall_s"] = round(time.monotonic() - t0, 1)
    if ctl_pid:
        out["idle"]["control_cpu_s"] = round(cpu_seconds(ctl_pid) - cpu0, 2)
    log(f"{kind} idle: {out['idle']}")

    # burst: the creations in another process, the probes here until they end
    ctx = mp.get_context("spawn")
    started, q = ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=burst_main,
        args=(url, headers, kind, args.burst, args.concurrency, started, q),
        daemon=True,
    )
    stop = threading.Event()
    probes = {k: Probe(url, headers, p, stop) for k, p in paths.items()}
    for p in probes.values():  # warmed up before the burst
        p.start()
    for p in probes.values():
        p.ready.wait()
    proc.start()
    try:
        if not started.wait(60):
            raise RuntimeError("the burst process did not start")
        cpu0, t0 = cpu_seconds(ctl_pid), time.monotonic()
        for p in probes.values():
            p.go.set()
        lat, bad, wall = q.get(timeout=900)
        cpu1 = cpu_seconds(ctl_pid)
        stop.set()
        for p in probes.values():
            p.join()
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
    burst: dict = {k: stats(p.lat) for k, p in probes.items()}
    for k, p in probes.items():
        burst[k]["errors"] = len(p.errors)
        burst[k]["errors_sample"] = p.errors[:3]
        if "p99" in burst[k]:
            burst[k]["p99_over_idle_p99"] = round(burst[k]["p99"] / out["idle"][k]["p99"], 2)
            burst[k]["p50_over_idle_p50"] = round(burst[k]["p50"] / out["idle"][k]["p50"], 2)
    burst["create"] = stats(lat)
    burst["create"]["failed"] = len(bad)
    burst["create"]["failures_sample"] = bad[:3]
    burst["wall_s"] = round(wall, 2)
    burst["creates_per_s"] = round(len(lat) / wall, 1)
    burst["probe_wall_s"] = round(time.monotonic() - t0, 2)
    if ctl_pid:
        burst["control_cpu_s"] = round(cpu1 - cpu0, 2)
        burst["control_cpu_ms_per_create"] = round((cpu1 - cpu0) * 1000 / max(1, len(lat)), 2)
        # the creations and the session GETs are its calls (the API answers hosts itself)
        calls = len(lat) + len(probes["get_session"].lat)
        burst["control_cpu_ms_per_call"] = round((cpu1 - cpu0) * 1000 / max(1, calls), 2)
    out["burst"] = burst
    log(f"{kind} burst: {burst}")
    return out


def report(run: dict) -> str:
    lines = [
        "| server | op | idle p50 / p99 | burst p50 / p99 / max | burst p99 / idle p99 |",
        "|---|---|---|---|---|",
    ]
    for kind in ("ours", "reference"):
        if kind not in run:
            continue
        r = run[kind]
        for op in ("get_session", "list_hosts"):
            i, b = r["idle"][op], r["burst"][op]
            if "p99" not in b:
                lines.append(f"| {kind} | {op} | – | {b['n']} answers, {b['errors']} errors | – |")
                continue
            lines.append(
                f"| {kind} | {op} | {i['p50']:.2f} / {i['p99']:.2f} | {b['p50']:.2f} / "
                f"{b['p99']:.2f} / {b['max']:.1f} | {b['p99_over_idle_p99']:.2f}x |"
            )
    for kind in ("ours", "reference"):
        if kind in run:
            b = run[kind]["burst"]
            cpu = (
                f", ControlActor CPU {b['control_cpu_s']} s "
                f"({b['control_cpu_ms_per_call']} ms per actor call)"
                if "control_cpu_s" in b
                else ""
            )
            lines.append(
                f"- {kind}: {b['create']['n']} creations in {b['wall_s']} s "
                f"({b['creates_per_s']}/s), POST p50/p99 {b['create'].get('p50')} / "
                f"{b['create'].get('p99')} ms, failed {b['create']['failed']}{cpu}"
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--burst", type=int, default=1000, help="sessions created in the burst")
    ap.add_argument("--concurrency", type=int, default=32, help="creations in flight")
    ap.add_argument("--idle-n", type=int, default=1000, help="idle requests per probe")
    ap.add_argument("--settle", type=float, default=10, help="s after the server is up")
    ap.add_argument(
        "--slow-fsync-ms", type=float, default=0, help="our store's syncs take this much longer"
    )
    ap.add_argument("--label", default="run", help="this run's key in the JSON file")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference server")
    ap.add_argument("--json", help="write (merge) the results here")
    args = ap.parse_args()

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = tempfile.mkdtemp(prefix="omni-bench-control-")
    os.chmod(tmp, 0o755)
    server = ref_server = ref_host = None
    run: dict = {
        "args": vars(args),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "loadavg_start": os.getloadavg(),
    }
    try:
        home = os.path.join(tmp, "home-ours")
        os.makedirs(home)
        env = slow_fsync_env(tmp, args.slow_fsync_ms) if args.slow_fsync_ms else {}
        server = Server(home=home, env=env)
        log(f"ours: starting `omnigent serve` on {server.url}")
        server.start()
        fix_token(server)
        ctl = control_pid(server.proc.popen.pid)
        log(f"ours: up; ControlActor pid {ctl}; settling {args.settle} s")
        time.sleep(args.settle)  # the runner pool and the first monitor passes
        headers = {"Authorization": f"Bearer {server.token}"}
        run["ours"] = measure("ours", server.url, headers, args, ctl)
        server.stop()  # one server at a time: they share two cores
        server = None
        if not args.no_reference:
            if not REF_BIN.exists():
                raise SystemExit(f"no reference server at {REF_BIN} (see --no-reference)")
            rhome = os.path.join(tmp, "home-ref")
            os.makedirs(rhome)
            log("reference: starting `omnigent server` + `omnigent host`")
            ref_server, ref_host, rurl, _host = start_ref(rhome)
            run["reference"] = measure("reference", rurl, {}, args, None)
        run["loadavg_end"] = os.getloadavg()
        print(report(run))
        if args.json:
            path = Path(args.json)
            saved = json.loads(path.read_text()) if path.exists() else {}
            saved.setdefault("runs", {})[args.label] = run
            path.write_text(json.dumps(saved, indent=1) + "\n")
            log(f"wrote {path} ({args.label})")
        return 0
    finally:
        log("stopping everything started here")
        kill_group(ref_host, "reference host")
        kill_group(ref_server, "reference server")
        if server:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
