"""Load held, side by side: N concurrent closed-loop clients against our server (1 and 2
API replicas) and the reference server (Omnigent 0.19.0), in one run.

    .venv/bin/python bench/bench_load.py [--clients 100 200] [--duration 60]
        [--replicas 1 2] [--floor] [--skip-ref] [--ops OP ...] [--warmup 5] [--timeout 30]
        [--json bench/load_results.json]

Each server gets its own copy of one workspace (a repository-like tree: 2,000 source
files in 40 packages, docs/ with 100 entries, a 10 KiB file, 10 files named needle_*),
one session and its runner (ours: on the server's own host; the reference: its host
daemon on the same machine). Then N clients, each its own keep-alive connection, one
request at a time, cycle through the op mix (client i starts at op i mod 9):

  hosts      GET  /v1/hosts
  hostfs     GET  /v1/hosts/{id}/filesystem/<workspace>/docs?limit=100
  list       GET  .../environments/default/filesystem/docs?limit=100
  read       GET  .../environments/default/filesystem/read10k.txt
  write      PUT  .../environments/default/filesystem/out/c<i>.txt  (4 KiB, one per client)
  changes    GET  .../environments/default/changes
  search     GET  .../environments/default/search?q=needle
  shell      POST .../environments/default/shell {"command": "echo ok"}
  resources  GET  /v1/sessions/{id}/resources

for `--warmup` seconds (not counted), then `--duration` seconds. A request that takes
longer than `--timeout` (30 s) is a time-out; a non-2xx answer an error. req/s counts
the answers that arrived within the measured window; the latencies are those of every
request started in it (those still running at its end are waited for, up to the
time-out).

CPU: utime+stime (+ that of reaped children, e.g. the runner's shells) from
/proc/<pid>/stat of every process of the server this script started (ours: the process
tree of `omnigent serve`, Ray's workers included; the reference: its server and host
daemon trees), read at the start and the end of the measured window, grouped by role
(each API replica, the ControlActor, the RunnerActor, the HostActor, the rest of Ray),
divided by the requests answered. Also: this client's own CPU, and the CPU the rest of
the machine used meanwhile (/proc/stat busy minus the above), with the load average.

`--floor` adds plain uvicorn serving the very app our runner serves, in-process
(bench/baseline_env_app.py, the environment ops only): the tail a single process shows
under the same load on the same machine. `--replicas 1 2 1 2` repeats a server, to see
the noise of a shared machine.

Servers run one after the other (ours with 1 replica, ours with 2, the floor, the
reference), each started, loaded with every client count and stopped. Every process started here is
stopped in `finally` (by process group / pid); never `ray stop`, never by name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_env import ref_session, wait_env  # noqa: E402
from bench_hosts import (  # noqa: E402
    P,
    fix_token,
    kill_group,
    log,
    proc_tree,
    start_reference,
    wait_http,
)

from tests.procs import Server, base_env, free_port  # noqa: E402

ENV = "/resources/environments/default"
TEN_KIB = ("0123456789abcdef" * 64 + "\n") * 10
FOUR_KIB = TEN_KIB[:4096]
OPS = ["hosts", "hostfs", "list", "read", "write", "changes", "search", "shell", "resources"]
TICK = os.sysconf("SC_CLK_TCK")


# --- workspace ------------------------------------------------------------------------
def make_workspace(path: str) -> str:
    """A repository-like tree: src/pkgNN/modNN.py (40 x 50), docs/ (100), a few files."""
    os.makedirs(path)
    for i in range(40):
        d = os.path.join(path, "src", f"pkg{i:02d}")
        os.makedirs(d)
        for j in range(50):
            name = f"needle_{i}.py" if j == 7 and i % 4 == 0 else f"mod{j:02d}.py"
            with open(os.path.join(d, name), "w") as f:
                f.write(f"# module {i}.{j}\n" + "x = 1\n" * (j + 1))
    docs = os.path.join(path, "docs")
    os.makedirs(docs)
    for i in range(100):
        with open(os.path.join(docs, f"page_{i:03d}.md"), "w") as f:
            f.write(f"# page {i}\n")
    with open(os.path.join(path, "read10k.txt"), "w") as f:
        f.write(TEN_KIB[:10240])
    with open(os.path.join(path, "README.md"), "w") as f:
        f.write("# bench\n")
    os.makedirs(os.path.join(path, "out"))
    os.chmod(path, 0o755)
    return path


def op_table(base: str, host_id: str, ws: str) -> dict[str, tuple[str, str]]:
    e = base + ENV
    return {
        "hosts": ("GET", "/v1/hosts"),
        "hostfs": ("GET", f"/v1/hosts/{host_id}/filesystem/{ws.lstrip('/')}/docs?limit=100"),
        "list": ("GET", f"{e}/filesystem/docs?limit=100"),
        "read": ("GET", f"{e}/filesystem/read10k.txt"),
        "write": ("PUT", f"{e}/filesystem/out/c{{i}}.txt"),
        "changes": ("GET", f"{e}/changes"),
        "search": ("GET", f"{e}/search?q=needle"),
        "shell": ("POST", f"{e}/shell"),
        "resources": ("GET", f"{base}/resources"),
    }


def body_of(op: str) -> dict | None:
    if op == "write":
        return {"content": FOUR_KIB}
    if op == "shell":
        return {"command": "echo ok"}
    return None


def check_ops(client: httpx.Client, table: dict) -> dict:
    """Every op answers 2xx once, with what it should; their sizes."""
    sizes = {}
    for op, (method, url) in table.items():
        r = client.request(method, url.format(i="check"), json=body_of(op))
        if r.status_code >= 300:
            raise RuntimeError(f"{op} {url}: {r.status_code} {r.text[:300]}")
        sizes[op] = len(r.content)
        body = r.json()
        if op in ("list", "hostfs"):
            assert len(body["data"]) == 100, (op, len(body["data"]))
        if op == "search":
            assert len(body["data"]) == 10, (op, body)
        if op == "read":
            assert body["content"] == TEN_KIB[:10240]
    return sizes


# --- processes and CPU ------------------------------------------------------------------
def role(p: P) -> str:
    argv = p.cmdline()
    first = argv[0] if argv else p.name()
    if first.startswith("ray::"):
        name = first.split()[0][5:]
        if name.startswith("ServeReplica"):
            return f"api replica {p.pid}"
        for cls in ("ControlActor", "RunnerActor", "HostActor", "SessionActor"):
            if name.startswith(cls):
                return cls
        if name.startswith("ServeController"):
            return "serve controller"
        return "other ray workers"
    joined = " ".join(argv[:3])
    if "omnigent" in joined and "server" in joined:
        return "server"
    if "omnigent" in joined and " host" in joined:
        return "host daemon"
    if "omnigent" in joined and "serve" in joined:
        return "omnigent serve (driver)"
    if p.name() in ("gcs_server", "raylet"):
        return p.name()
    return "other"


def ref_role(p: P, server_pids: set[int]) -> str:
    argv = " ".join(p.cmdline()[:4])
    if p.pid in server_pids:
        return "server"
    if "omnigent" in argv and " host" in argv:
        return "host daemon"
    if p.name().startswith("tmux"):
        return "tmux"
    return f"runner/other ({p.name()})"


def cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime (reaped children), in clock ticks; 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return sum(int(x) for x in fields[11:15])


def cpu_pressure() -> float:
    """/proc/pressure/cpu "some" total: microseconds during which a runnable task waited
    for a CPU (0 where the kernel has no PSI)."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy() -> tuple[int, int]:
    """(busy, total) ticks of the whole machine."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + vals[4]
    total = sum(vals[:8])
    return total - idle, total


class Procs:
    """The processes of one server, by role; CPU snapshots."""

    def __init__(self, roots: list[int], labeler) -> None:
        self.roots, self.labeler = roots, labeler
        self.refresh()

    def refresh(self) -> None:
        seen: dict[int, P] = {}
        for pid in self.roots:
            for p in proc_tree(pid):
                seen.setdefault(p.pid, p)
        self.roles = {pid: self.labeler(p) for pid, p in seen.items()}

    def snapshot(self) -> dict[int, int]:
        return {pid: cpu_ticks(pid) for pid in self.roles}


def cpu_by_role(procs: Procs, before: dict[int, int], after: dict[int, int]) -> dict:
    out: dict[str, float] = {}
    for pid, r in procs.roles.items():
        delta = max(0, after.get(pid, 0) - before.get(pid, 0)) / TICK
        out[r] = out.get(r, 0.0) + delta
    return {k: round(v, 3) for k, v in sorted(out.items())}


# --- the load -------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float:
    if len(xs) < 2:
        return xs[0] if xs else float("nan")
    return statistics.quantiles(xs, n=1000, method="inclusive")[int(q * 10) - 1]


async def load(
    url: str,
    headers: dict,
    table: dict,
    n: int,
    warmup: float,
    duration: float,
    timeout: float,
    on_start,
) -> dict:
    ops = [op for op in OPS if op in table]
    lat: dict[str, list[float]] = {op: [] for op in OPS}
    errors: dict[str, int] = dict.fromkeys(OPS, 0)
    timeouts: dict[str, int] = dict.fromkeys(OPS, 0)
    failures: dict[str, int] = dict.fromkeys(OPS, 0)  # connection errors
    statuses: dict[str, int] = {}
    done_in_window = 0
    per_second = [0] * int(duration + 1)
    slow: list[tuple[float, str, float]] = []  # (start, op, ms) of every measured answer
    t0 = time.monotonic()
    m_start = t0 + warmup
    m_end = m_start + duration
    started = asyncio.Event()
    lags: list[float] = []  # this client's own loop: how late a 10 ms sleep wakes up

    async def lag_probe() -> None:
        while time.monotonic() < m_end:
            a = time.monotonic()
            await asyncio.sleep(0.01)
            if a >= m_start:
                lags.append((time.monotonic() - a - 0.01) * 1000)

    async def starter() -> None:
        await asyncio.sleep(max(0.0, m_start - time.monotonic()))
        on_start()
        started.set()

    async def client(i: int) -> None:
        nonlocal done_in_window
        conn = aiohttp.TCPConnector(limit=1, force_close=False)
        to = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(url, headers=headers, connector=conn, timeout=to) as s:
            k = i
            while True:
                op = ops[k % len(ops)]
                if op in table:
                    break
                k += 1
            while time.monotonic() < m_end:
                op = ops[k % len(ops)]
                k += 1
                method, path = table[op]
                s0 = time.monotonic()
                measured = s0 >= m_start
                status = 0
                try:
                    async with s.request(method, path.format(i=i), json=body_of(op)) as r:
                        await r.read()
                        status = r.status
                except TimeoutError:
                    if measured:
                        timeouts[op] += 1
                    continue
                except (aiohttp.ClientError, OSError) as exc:
                    if measured:
                        failures[op] += 1
                        statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                    await asyncio.sleep(0.1)
                    continue
                s1 = time.monotonic()
                if m_start <= s1 <= m_end:
                    done_in_window += 1
                    per_second[int(s1 - m_start)] += 1
                if not measured:
                    continue
                if status >= 300:
                    errors[op] += 1
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                else:
                    lat[op].append((s1 - s0) * 1000)
                    slow.append((s0 - m_start, op, (s1 - s0) * 1000))

    start_task = asyncio.create_task(starter())
    probe = asyncio.create_task(lag_probe())
    await asyncio.gather(*(client(i) for i in range(n)))
    await start_task
    await probe
    drained = time.monotonic() - m_end
    per_op = {}
    for op in OPS:
        xs = lat[op]
        per_op[op] = {
            "n": len(xs),
            "p50": round(pct(xs, 50), 1) if xs else None,
            "p99": round(pct(xs, 99), 1) if xs else None,
            "max": round(max(xs), 1) if xs else None,
            "errors": errors[op],
            "timeouts": timeouts[op],
            "failures": failures[op],
        }
        if xs:
            per_op[op]["p99_over_p50"] = round(per_op[op]["p99"] / max(per_op[op]["p50"], 0.1), 2)
    all_xs = [x for xs in lat.values() for x in xs]
    # where the tail sits in time: the seconds (of the window) in which the requests
    # slower than 3x their op's p50 started
    tail_at: dict[int, int] = {}
    for start, op, ms in slow:
        if ms > 3 * per_op[op]["p50"]:
            sec = int(start)
            tail_at[sec] = tail_at.get(sec, 0) + 1
    return {
        "clients": n,
        "duration_s": duration,
        "answered_in_window": done_in_window,
        "req_per_s": round(done_in_window / duration, 1),
        "errors": sum(errors.values()),
        "timeouts": sum(timeouts.values()),
        "failures": sum(failures.values()),
        "statuses": statuses,
        "drain_s": round(drained, 2),
        "client_loop_lag_ms": {
            "p50": round(pct(lags, 50), 1) if lags else None,
            "p99": round(pct(lags, 99), 1) if lags else None,
            "max": round(max(lags), 1) if lags else None,
        },
        "starving_ops": [op for op in OPS if per_op[op]["n"] and per_op[op]["p99_over_p50"] > 3],
        "per_second": per_second[: int(duration)],
        "over_3x_p50_by_start_second": dict(sorted(tail_at.items())),
        "all_ops": {
            "p50": round(pct(all_xs, 50), 1) if all_xs else None,
            "p99": round(pct(all_xs, 99), 1) if all_xs else None,
            "max": round(max(all_xs), 1) if all_xs else None,
        },
        "ops": per_op,
    }


def run_round(name: str, url: str, headers: dict, table: dict, procs: Procs, n: int, args) -> dict:
    snap: dict = {}

    def on_start() -> None:
        snap["cpu"] = procs.snapshot()
        snap["busy"] = machine_busy()
        snap["self"] = os.times()
        snap["load"] = os.getloadavg()
        snap["psi"] = cpu_pressure()

    end: dict = {}

    async def measured() -> dict:
        async def stopper() -> None:  # the end-of-window snapshot
            await asyncio.sleep(args.warmup + args.duration)
            end["cpu"] = procs.snapshot()
            end["busy"] = machine_busy()
            end["self"] = os.times()
            end["load"] = os.getloadavg()
            end["psi"] = cpu_pressure()

        t = asyncio.create_task(stopper())
        res = await load(url, headers, table, n, args.warmup, args.duration, args.timeout, on_start)
        await t
        return res

    procs.refresh()
    log(f"{name}: {n} clients, {args.warmup:.0f} s warm-up + {args.duration:.0f} s")
    res = _run(measured())
    answered = max(1, res["answered_in_window"])
    cpu = cpu_by_role(procs, snap["cpu"], end["cpu"])
    server_cpu = sum(cpu.values())
    self_cpu = (end["self"].user + end["self"].system) - (snap["self"].user + snap["self"].system)
    busy = (end["busy"][0] - snap["busy"][0]) / TICK
    res["cpu_s"] = cpu
    res["cpu_ms_per_request"] = {k: round(v * 1000 / answered, 3) for k, v in cpu.items()}
    res["server_cpu_s"] = round(server_cpu, 2)
    res["server_cpu_ms_per_request"] = round(server_cpu * 1000 / answered, 3)
    res["client_cpu_s"] = round(self_cpu, 2)
    # what this machine would carry with nothing else on it: its cores over the CPU a
    # request costs the server and this client
    res["req_per_s_machine_alone"] = round(
        (os.cpu_count() or 1) / ((server_cpu + self_cpu) / answered), 1
    )
    res["machine_busy_s"] = round(busy, 2)
    res["others_cpu_s"] = round(busy - server_cpu - self_cpu, 2)
    # share of the window during which some runnable task waited for a CPU
    res["cpu_pressure_some"] = round((end["psi"] - snap["psi"]) / 1e6 / args.duration, 3)
    res["loadavg_start"] = [round(x, 2) for x in snap["load"]]
    res["loadavg_end"] = [round(x, 2) for x in end["load"]]
    log(
        f"{name} @{n}: {res['req_per_s']} req/s, {res['errors']} errors, "
        f"{res['timeouts']} time-outs, {res['failures']} failures; server CPU "
        f"{res['server_cpu_ms_per_request']} ms/req; others {res['others_cpu_s']} s; "
        f"load {res['loadavg_end']}"
    )
    return res


def _run(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# --- servers --------------------------------------------------------------------------
def run_ours(replicas: int, tmp: str, args) -> dict:
    home = tempfile.mkdtemp(prefix=f"ours-{replicas}-", dir=tmp)
    os.chmod(home, 0o755)
    server = None
    out: dict = {"replicas": replicas, "rounds": []}
    try:
        ws = make_workspace(os.path.join(home, "ws"))
        t0 = time.monotonic()
        server = Server(home=home, env={"OMNIGENT_API_REPLICAS": str(replicas)}).start()
        fix_token(server)
        log(f"ours ({replicas} replica(s)) up in {time.monotonic() - t0:.1f} s on {server.url}")
        headers = {"Authorization": f"Bearer {server.token}"}
        with server.client(server.token) as c:
            r = c.post(
                "/v1/sessions",
                json={
                    "title": "bench",
                    "agent": {"name": "bench"},
                    "host_id": server.host_id,
                    "workspace": ws,
                },
            )
            if r.status_code >= 300:
                raise RuntimeError(f"session: {r.status_code} {r.text[:300]}")
            base = f"/v1/sessions/{r.json()['id']}"
            wait_env(c, base)
            table = op_table(base, server.host_id, ws)
            out["body_bytes"] = check_ops(c, table)
            table = {op: v for op, v in table.items() if op in args.ops}
            seen = set()
            deadline = time.monotonic() + 30
            while len(seen) < replicas and time.monotonic() < deadline:
                with server.client(None) as fresh:  # a new connection each time
                    seen.add(fresh.get("/healthz").json().get("replica"))
            out["replicas_answering"] = len(seen)
        procs = Procs([server.proc.popen.pid], role)
        out["processes"] = sorted(set(procs.roles.values()))
        for n in args.clients:
            out["rounds"].append(
                run_round(f"ours x{replicas}", server.url, headers, table, procs, n, args)
            )
    finally:
        if server:
            server.stop()
    return out


def run_floor(tmp: str, args) -> dict:
    """Plain uvicorn serving the very app our runner serves, in one process
    (bench/baseline_env_app.py): the environment ops only, no hop, no Ray. What this
    process's tail looks like under the same load and machine is the floor's."""
    home = tempfile.mkdtemp(prefix="floor-", dir=tmp)
    proc = None
    out: dict = {"rounds": []}
    try:
        ws = make_workspace(os.path.join(home, "ws"))
        port, token = free_port(), "floor-token"
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "baseline_env_app.py"),
                str(port),
                token,
                ws,
                os.path.join(home, "state"),
            ],
            env=base_env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", 60, alive=lambda: proc is not None and proc.poll() is None)
        headers = {"Authorization": f"Bearer {token}"}
        table = op_table("/v1/sessions/bench", "-", ws)
        del table["hosts"], table["hostfs"]
        with httpx.Client(base_url=url, timeout=60, headers=headers) as c:
            out["body_bytes"] = check_ops(c, table)
        table = {op: v for op, v in table.items() if op in args.ops}
        procs = Procs([proc.pid], lambda p: "uvicorn (in-process app)")
        for n in args.clients:
            out["rounds"].append(run_round("uvicorn floor", url, headers, table, procs, n, args))
    finally:
        kill_group(proc, "uvicorn floor")
    return out


def run_reference(tmp: str, args) -> dict:
    home = os.path.join(tmp, "ref")
    os.makedirs(home)
    ref_server = ref_host = None
    out: dict = {"rounds": []}
    try:
        ws = make_workspace(os.path.join(home, "ws"))
        for attempt in (1, 2):
            # its own Python (3.12) must not import our sources: no PYTHONPATH of ours
            pythonpath = os.environ.pop("PYTHONPATH", None)
            try:
                ref_server, ref_host, rurl, host_id = start_reference(home)
                break
            except RuntimeError as exc:
                tail = Path(home, "server.log").read_text(errors="replace")[-2000:]
                log(f"reference did not start ({exc}); its log ends:\n{tail}")
                if attempt == 2:
                    raise
            finally:
                if pythonpath is not None:
                    os.environ["PYTHONPATH"] = pythonpath
        with httpx.Client(base_url=rurl, timeout=60) as c:
            sid = ref_session(c)
            r = c.post(f"/v1/hosts/{host_id}/runners", json={"session_id": sid, "workspace": ws})
            if r.status_code >= 300:
                raise RuntimeError(f"reference launch: {r.status_code} {r.text[:300]}")
            base = f"/v1/sessions/{sid}"
            wait_env(c, base)
            table = op_table(base, host_id, ws)
            out["body_bytes"] = check_ops(c, table)
            table = {op: v for op, v in table.items() if op in args.ops}
        log(f"reference up on {rurl}, session {sid}")
        server_pids = {ref_server.pid}
        procs = Procs([ref_server.pid, ref_host.pid], lambda p: ref_role(p, server_pids))
        out["processes"] = sorted(set(procs.roles.values()))
        for n in args.clients:
            out["rounds"].append(run_round("reference", rurl, {}, table, procs, n, args))
    finally:
        kill_group(ref_host, "reference host")
        kill_group(ref_server, "reference server")
    return out


# --- report ---------------------------------------------------------------------------
def report(result: dict) -> None:
    servers = result["servers"]
    for n in result["clients"]:
        print(f"\n== {n} clients, {result['duration_s']:.0f} s ==")
        cols = [(k, v) for k, v in servers.items()]
        rounds = {k: next((r for r in v["rounds"] if r["clients"] == n), None) for k, v in cols}
        hdr = f"{'':<22}" + "".join(f"{k:>26}" for k, _ in cols)
        print(hdr)
        row = f"{'req/s':<22}"
        for k, _ in cols:
            row += f"{rounds[k]['req_per_s'] if rounds[k] else '-':>26}"
        print(row)
        row = f"{'errors / time-outs':<22}"
        for k, _ in cols:
            r = rounds[k]
            cell = f"{r['errors'] + r['failures']} / {r['timeouts']}" if r else "-"
            row += f"{cell:>26}"
        print(row)
        for op in ["all ops", *OPS]:
            if op != "all ops" and not any(r and r["ops"][op]["n"] for r in rounds.values()):
                continue
            row = f"{op + ' p50/p99/max':<22}"
            for k, _ in cols:
                r = rounds[k]
                s = (r["all_ops"] if op == "all ops" else r["ops"][op]) if r else None
                cell = f"{s['p50']}/{s['p99']}/{s['max']}" if s and s["p50"] is not None else "-"
                row += f"{cell:>26}"
            print(row)
        row = f"{'server CPU ms/req':<22}"
        for k, _ in cols:
            row += f"{rounds[k]['server_cpu_ms_per_request'] if rounds[k] else '-':>26}"
        print(row)
        for k, _ in cols:
            r = rounds[k]
            if r:
                parts = ", ".join(f"{role} {v}" for role, v in r["cpu_ms_per_request"].items() if v)
                print(f"  {k} CPU ms/req: {parts}")
                print(
                    f"  {k}: client CPU {r['client_cpu_s']} s, rest of machine "
                    f"{r['others_cpu_s']} s, load {r['loadavg_start']} -> {r['loadavg_end']}, "
                    f"CPU pressure {r['cpu_pressure_some']}, client loop lag p99 "
                    f"{r['client_loop_lag_ms']['p99']} ms; p99 > 3x p50: {r['starving_ops']}"
                )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--timeout", type=float, default=30, help="per request: a time-out")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--ops", nargs="+", choices=OPS, default=OPS, help="a subset of the mix")
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also plain uvicorn serving our runner's app in-process (environment ops only)",
    )
    ap.add_argument("--skip-ref", action="store_true", help="skip the reference server")
    ap.add_argument("--json", default=str(ROOT / "bench" / "load_results.json"))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    tmp = tempfile.mkdtemp(prefix="omni-bench-load-")
    os.chmod(tmp, 0o755)
    result: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "clients": args.clients,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "timeout_s": args.timeout,
        "ops": args.ops,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "servers": {},
    }
    try:
        for replicas in args.replicas:
            key = f"ours x{replicas}"
            if key in result["servers"]:  # --replicas 1 2 1 2: repeats, to see the noise
                key += f" #{sum(k.startswith(key) for k in result['servers']) + 1}"
            try:
                result["servers"][key] = run_ours(replicas, tmp, args)
            except Exception as exc:  # keep what the other servers gave
                log(f"{key} failed: {exc!r}")
                result["failed"] = {**result.get("failed", {}), key: repr(exc)}
        if args.floor:
            try:
                result["servers"]["uvicorn floor"] = run_floor(tmp, args)
            except Exception as exc:
                log(f"uvicorn floor failed: {exc!r}")
                result["failed"] = {**result.get("failed", {}), "uvicorn floor": repr(exc)}
        if not args.skip_ref:
            try:
                result["servers"]["reference"] = run_reference(tmp, args)
            except Exception as exc:
                log(f"reference failed: {exc!r}")
                result["failed"] = {**result.get("failed", {}), "reference": repr(exc)}
    finally:
        result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        subprocess.run(["chmod", "-R", "u+rwx", tmp], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
