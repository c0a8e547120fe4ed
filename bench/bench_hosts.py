"""Hosts API latency, cold start and idle memory: our server beside plain uvicorn and the
reference server (Omnigent 0.19.0), in one run.

    .venv/bin/python bench/bench_hosts.py [--n 500] [--json out.json]

Measured (sequential requests over one keep-alive httpx.Client per server, warm-up first,
the servers interleaved in chunks so background noise hits them alike):
  (a) GET /v1/hosts
  (b) GET /v1/hosts/{id}/filesystem/<dir>?limit=100 of a directory holding exactly 100
      entries (60 files, 40 directories) under the HOME of a Ray node on 127.0.0.11.
      Ours browses a host joined on that non-head node, so the listing runs in
      a HostActor there; the baseline lists it in-process; the reference's host daemon
      lists it (same machine).
Diagnostics for ours (to see where the time goes): /healthz (the floor of our replica's
uvicorn), GET /v1/hosts/{id} (auth + table lookup, no actor call) and the same listing
through the server's own host, whose HostActor is on the head node.

Cold start (ours): from launching `omnigent serve` to the first 200 of GET /healthz
(polled every 10 ms), and to the "ready" line (local host registered, token printed).
Idle memory: RSS (and PSS, which does not count shared pages twice) summed over a
process tree: the server process, its process group, and every descendant (the embedded
Ray head's GCS, raylet, agents and the raylet's workers: Serve controller, the API
replica, the ControlActor, the head's HostActor). The worker node
are reported on their own lines.

Every process started here is stopped in `finally` (by process group / pid); never
`ray stop`, never by name.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import RayNode, Server, base_env, free_port  # noqa: E402

REF_BIN = Path(os.path.expanduser("~")) / ".cache/omnigent-ref/venv/bin/omnigent"
NODE_IP = "127.0.0.11"
N_FILES, N_DIRS = 60, 40
WARMUP = 50
CHUNK = 50


# --- helpers --------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_dir(parent: str) -> str:
    """Exactly 100 entries, mixed files (various sizes) and directories."""
    path = os.path.join(parent, "bench100")
    os.mkdir(path)
    for i in range(N_FILES):
        with open(os.path.join(path, f"file_{i:03d}.txt"), "wb") as f:
            f.write(b"x" * (i * 37))
    for i in range(N_DIRS):
        d = os.path.join(path, f"dir_{i:03d}")
        os.mkdir(d)
        with open(os.path.join(d, "inner.txt"), "w") as f:
            f.write("inner")
    assert len(os.listdir(path)) == 100
    os.chmod(parent, 0o755)
    return path


def wait_http(
    url: str,
    timeout: float,
    ok=lambda r: r.status_code == 200,
    headers: dict | None = None,
    alive=lambda: True,
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"process died while waiting for {url}")
        try:
            r = httpx.get(url, headers=headers, timeout=2)
            if ok(r):
                return r
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url}: not ready after {timeout}s (last: {last})")


def fix_token(server) -> bool:
    """tests.procs.Server.start reads the token as the output's last line 0.2 s after the
    "token (saved in" line, but the server's local daemon thread may log "registered as
    host ..." after the token (it sets `registered` before logging), so that line can be
    taken instead. Use the token file the server saved. True if it had to be corrected.
    """
    saved = (Path(server.home) / ".omnigent" / "token").read_text().strip()
    wrong = server.token != saved
    if wrong:
        log(f"tests.procs.Server read {server.token!r} as the token; using the saved token")
        server.token = saved
    return wrong


class FirstOk(threading.Thread):
    """Polls a URL every 10 ms from `t0` on; records when it first answers 200."""

    def __init__(self, url: str, t0: float, timeout: float = 240) -> None:
        super().__init__(daemon=True)
        self.url, self.t0, self.timeout = url, t0, timeout
        self.seconds: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=1) as c:
            while not self.stop.is_set() and time.monotonic() - self.t0 < self.timeout:
                try:
                    if c.get(self.url).status_code == 200:
                        self.seconds = time.monotonic() - self.t0
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)


class P:
    """A process read from /proc (psutil is not in this venv)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        self._name = data[data.index("(") + 1 : data.rindex(")")]
        fields = data[data.rindex(")") + 2 :].split()
        self.state, self.ppid, self.pgid = fields[0], int(fields[1]), int(fields[2])
        self.start = fields[19]  # starttime: tells a reused pid apart

    def name(self) -> str:
        return self._name

    def cmdline(self) -> list[str]:
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            return []

    def alive(self) -> bool:
        try:
            q = P(self.pid)
        except (OSError, ValueError):
            return False
        return q.start == self.start and q.state != "Z"

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)

    def memory(self) -> tuple[int, int]:
        """(RSS, PSS) in bytes."""
        rss = pss = 0
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        try:
            with open(f"/proc/{self.pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss = int(line.split()[1]) * 1024
        except OSError:
            pss = rss
        return rss, pss


def all_procs() -> list[P]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                out.append(P(int(d)))
            except (OSError, ValueError, IndexError):
                pass
    return out


def proc_tree(pid: int) -> list[P]:
    """`pid`, every descendant, and every member (and descendant) of its process group."""
    procs = all_procs()
    kids: dict[int, list[P]] = {}
    for p in procs:
        kids.setdefault(p.ppid, []).append(p)
    roots = [p for p in procs if p.pid == pid or p.pgid == pid]
    seen: dict[int, P] = {}
    stack = list(roots)
    while stack:
        p = stack.pop()
        if p.pid in seen:
            continue
        seen[p.pid] = p
        stack.extend(kids.get(p.pid, []))
    return [p for p in seen.values() if p.state != "Z"]


def memory(pids: list[int]) -> dict:
    seen: dict[int, P] = {}
    for pid in pids:
        for p in proc_tree(pid):
            seen.setdefault(p.pid, p)
    rss = pss = 0
    names = []
    for p in seen.values():
        try:
            r, q = p.memory()
        except OSError:
            continue
        rss += r
        pss += q
        names.append(f"{p.pid}:{p.name()}:{r // 2**20}")
    return {
        "rss_mib": round(rss / 2**20, 1),
        "pss_mib": round(pss / 2**20, 1),
        "processes": len(names),
        "detail": sorted(names),
    }


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


def summary(xs: list[float]) -> dict:
    return {
        "p50": round(pct(xs, 50), 3),
        "p99": round(pct(xs, 99), 3),
        "mean": round(statistics.fmean(xs), 3),
        "min": round(min(xs), 3),
        "n": len(xs),
    }


def kill_group(popen: subprocess.Popen | None, name: str) -> None:
    """SIGTERM the group a child leads (start_new_session=True), then SIGKILL it."""
    if popen is None:
        return
    leftovers = [p for p in proc_tree(popen.pid) if p.pid != popen.pid]
    try:
        os.killpg(popen.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        popen.wait(10)
    except subprocess.TimeoutExpired:
        log(f"{name} did not exit on SIGTERM")
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    popen.wait(5)
    for p in leftovers:  # descendants that left the group (e.g. a tmux server)
        if p.alive():
            log(f"{name}: killing leftover descendant {p.pid} {p.name()}")
            try:
                p.kill()
            except OSError:
                pass


def start_reference(home: str) -> tuple[subprocess.Popen, subprocess.Popen, str, str]:
    """The reference server and its host daemon in `home` (single-user mode), the host
    online: (server process, host process, url, host id). The caller stops both."""
    rport = free_port()
    rurl = f"http://127.0.0.1:{rport}"
    renv = base_env(home, OMNIGENT_LOCAL_SINGLE_USER="1")
    server = subprocess.Popen(
        [str(REF_BIN), "server", "--port", str(rport), "--no-open"],
        env=renv,
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=open(f"{home}/server.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    host = None
    try:
        wait_http(f"{rurl}/v1/hosts", 120, alive=lambda: server.poll() is None)
        host = subprocess.Popen(
            [str(REF_BIN), "host", rurl, "--non-interactive"],
            env=renv,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=open(f"{home}/host.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        r = wait_http(
            f"{rurl}/v1/hosts",
            60,
            alive=lambda: host.poll() is None,
            ok=lambda r: (
                r.status_code == 200 and any(h.get("status") == "online" for h in r.json()["hosts"])
            ),
        )
    except BaseException:
        kill_group(host, "reference host")
        kill_group(server, "reference server")
        raise
    return server, host, rurl, r.json()["hosts"][0]["host_id"]


# --- the run --------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="measured requests per operation")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference server")
    args = ap.parse_args()

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    tmp_dirs: list[str] = []

    def tmpdir(prefix: str) -> str:
        d = tempfile.mkdtemp(prefix=prefix)
        tmp_dirs.append(d)
        return d

    server = node = None
    baseline = ref_server = ref_host = None
    clients: list[httpx.Client] = []
    result: dict = {"n": args.n, "warmup": WARMUP, "node_ip": NODE_IP}
    try:
        node_home = tmpdir("omni-bench-node-")
        bench_dir = make_dir(node_home)
        rel = bench_dir.lstrip("/")
        result["dir"] = bench_dir

        # -- ours: cold start ------------------------------------------------------------
        server = Server(home=tmpdir("omni-bench-server-"))
        t0 = time.monotonic()
        poll = FirstOk(f"{server.url}/healthz", t0)
        poll.start()
        log(f"starting our server on {server.url} (Ray node ip 127.0.0.10)")
        server.start()
        ready_s = time.monotonic() - t0
        poll.join(5)
        result["token_line_race_hit"] = fix_token(server)
        ready_line = next((ln for ln in server.proc.lines if "server ready in" in ln), "")
        result["ours_cold_start"] = {
            "healthz_first_200_s": poll.seconds,
            "ready_s": ready_s,
            "server_reported": ready_line.strip(),
        }
        log(f"ours: /healthz 200 after {poll.seconds}s, ready after {ready_s:.1f}s")

        node = RayNode(server, NODE_IP, node_home)
        node.wait_started()
        ours = server.client(server.token)
        host_id = node.wait_host(ours)
        clients.append(ours)
        hosts = ours.get("/v1/hosts").json()["hosts"]
        local_host = next(h["id"] for h in hosts if h["id"] != host_id)
        log(f"ours: node {NODE_IP} up, host {host_id} (local host {local_host})")
        # The listing must run on the node: its HostActor is a descendant of the node's
        # `ray start`, not of the server.
        deadline = time.monotonic() + 10
        while True:
            on_node = [
                p
                for p in proc_tree(node.proc.popen.pid)
                if "HostActor" in " ".join(p.cmdline() + [p.name()])
            ]
            if on_node or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        result["ours_host_actor_on_node"] = bool(on_node)
        if not on_node:
            log("WARNING: no HostActor process found under the worker node's process tree")

        # -- baseline --------------------------------------------------------------------
        bport = free_port()
        baseline = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "baseline_app.py"),
                str(bport),
                server.token,
                json.dumps(hosts),
            ],
            env=base_env(tmpdir("omni-bench-base-")),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        burl = f"http://127.0.0.1:{bport}"
        wait_http(f"{burl}/healthz", 30, alive=lambda: baseline.poll() is None)
        base = httpx.Client(
            base_url=burl, timeout=30, headers={"Authorization": f"Bearer {server.token}"}
        )
        clients.append(base)
        log(f"baseline up on {burl}")

        # -- reference -------------------------------------------------------------------
        ref = None
        ref_host_id = None
        if not args.no_reference:
            ref_home = tmpdir("omni-bench-ref-")
            rport = free_port()
            rurl = f"http://127.0.0.1:{rport}"
            renv = base_env(ref_home, OMNIGENT_LOCAL_SINGLE_USER="1")
            t0 = time.monotonic()
            rpoll = FirstOk(f"{rurl}/health", t0)
            rpoll.start()
            ref_server = subprocess.Popen(
                [str(REF_BIN), "server", "--port", str(rport), "--no-open"],
                env=renv,
                cwd=ref_home,
                stdin=subprocess.DEVNULL,
                stdout=open(f"{ref_home}/server.log", "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            wait_http(f"{rurl}/v1/hosts", 120, alive=lambda: ref_server.poll() is None)
            rpoll.join(5)
            ref_up = time.monotonic() - t0
            ref_host = subprocess.Popen(
                [str(REF_BIN), "host", rurl, "--non-interactive"],
                env=renv,
                cwd=ref_home,
                stdin=subprocess.DEVNULL,
                stdout=open(f"{ref_home}/host.log", "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            r = wait_http(
                f"{rurl}/v1/hosts",
                60,
                alive=lambda: ref_host.poll() is None,
                ok=lambda r: (
                    r.status_code == 200
                    and any(h.get("status") == "online" for h in r.json()["hosts"])
                ),
            )
            ref_host_id = r.json()["hosts"][0]["host_id"]
            ref = httpx.Client(base_url=rurl, timeout=30)
            clients.append(ref)
            result["reference_cold_start"] = {
                "health_first_200_s": rpoll.seconds,
                "hosts_200_s": ref_up,
            }
            log(f"reference up on {rurl} after {ref_up:.1f}s, host {ref_host_id}")

        # -- same answers? ---------------------------------------------------------------
        def fs_url(hid: str) -> str:
            return f"/v1/hosts/{hid}/filesystem/{rel}?limit=100"

        def listing(client, hid):
            r = client.get(fs_url(hid))
            r.raise_for_status()
            body = r.json()
            return (
                [
                    (e["name"], e["path"], e["type"], e.get("bytes"), e.get("modified_at"))
                    for e in body["data"]
                ],
                sorted(body),
                len(r.content),
            )

        got = {"ours": listing(ours, host_id), "uvicorn": listing(base, "x")}
        if ref:
            got["reference"] = listing(ref, ref_host_id)
        want = got["ours"][0]
        assert len(want) == 100, f"ours listed {len(want)} entries"
        for k, (entries, _keys, _size) in got.items():
            if entries != want:
                raise AssertionError(f"{k}'s listing differs from ours")
        result["fs_envelope_keys"] = {k: v[1] for k, v in got.items()}
        result["fs_body_bytes"] = {k: v[2] for k, v in got.items()}
        result["hosts_body_bytes"] = {
            "ours": len(ours.get("/v1/hosts").content),
            "uvicorn": len(base.get("/v1/hosts").content),
        }
        if ref:
            result["hosts_body_bytes"]["reference"] = len(ref.get("/v1/hosts").content)
        log("all listings agree (100 entries, same names/paths/types/bytes/mtimes)")

        # -- idle memory after start -----------------------------------------------------
        time.sleep(5)
        mem_start = {
            "ours_head": memory([server.proc.popen.pid]),
            "ours_worker_node": memory([node.proc.popen.pid]),
            "uvicorn": memory([baseline.pid]),
        }
        if ref:
            mem_start["reference"] = memory([ref_server.pid, ref_host.pid])

        # -- latency ---------------------------------------------------------------------
        ops = [  # (key, label, main?, {target: (client, url)})
            (
                "hosts",
                "GET /v1/hosts",
                True,
                {
                    "ours": (ours, "/v1/hosts"),
                    "uvicorn": (base, "/v1/hosts"),
                    **({"reference": (ref, "/v1/hosts")} if ref else {}),
                },
            ),
            (
                "fs100",
                "host filesystem, 100 entries",
                True,
                {
                    "ours": (ours, fs_url(host_id)),
                    "uvicorn": (base, fs_url("x")),
                    **({"reference": (ref, fs_url(ref_host_id))} if ref else {}),
                },
            ),
            (
                "health",
                "[diag] health check",
                False,
                {
                    "ours": (ours, "/healthz"),
                    "uvicorn": (base, "/healthz"),
                    **({"reference": (ref, "/health")} if ref else {}),
                },
            ),
            (
                "get_host",
                "[diag] GET /v1/hosts/{id}",
                False,
                {
                    "ours": (ours, f"/v1/hosts/{host_id}"),
                    **({"reference": (ref, f"/v1/hosts/{ref_host_id}")} if ref else {}),
                },
            ),
            (
                "fs100_head",
                "[diag] fs 100, host on head node",
                False,
                {"ours": (ours, fs_url(local_host))},
            ),
        ]
        samples = {op[0]: {t: [] for t in op[3]} for op in ops}
        for _key, _, _, targets in ops:
            for t, (client, url) in targets.items():
                for _ in range(WARMUP):
                    r = client.get(url)
                    if r.status_code != 200:
                        raise RuntimeError(f"{t} {url}: {r.status_code} {r.text[:300]}")
        mine = {
            p.pid
            for x in (
                server.proc.popen.pid,
                node.proc.popen.pid,
                baseline.pid,
                *([ref_server.pid, ref_host.pid] if ref else []),
            )
            for p in proc_tree(x)
        } | {os.getpid()}

        def foreign() -> dict:
            """Other sessions' test runs and Ray processes busy on this machine."""
            names = [" ".join(p.cmdline())[:60] for p in all_procs() if p.pid not in mine]
            return {
                "loadavg_1m": os.getloadavg()[0],
                "pytest": sum("pytest" in n for n in names),
                "ray_procs": sum(
                    n.startswith(
                        ("ray::", "/work/main/.venv/lib/python3.11/site-packages/ray/core")
                    )
                    for n in names
                ),
            }

        activity = [foreign()]
        log(f"measuring {args.n} requests per operation and server")
        for _ in range(math.ceil(args.n / CHUNK)):
            for key, _, _, targets in ops:
                for t, (client, url) in targets.items():
                    xs = samples[key][t]
                    for _ in range(min(CHUNK, args.n - len(xs))):
                        s = time.perf_counter()
                        r = client.get(url)
                        xs.append((time.perf_counter() - s) * 1000)
                        if r.status_code != 200:
                            raise RuntimeError(f"{t} {url}: {r.status_code} {r.text[:300]}")
        activity.append(foreign())
        result["foreign_activity_before_after"] = activity
        lat = {key: {t: summary(xs) for t, xs in per.items()} for key, per in samples.items()}
        result["latency_ms"] = lat

        # -- idle memory after load ------------------------------------------------------
        time.sleep(5)
        mem_load = {
            "ours_head": memory([server.proc.popen.pid]),
            "ours_worker_node": memory([node.proc.popen.pid]),
            "uvicorn": memory([baseline.pid]),
        }
        if ref:
            mem_load["reference"] = memory([ref_server.pid, ref_host.pid])
        result["idle_memory_after_start"] = mem_start
        result["idle_memory_after_load"] = mem_load

        # -- report ----------------------------------------------------------------------
        def cell(key, t):
            s = lat[key].get(t)
            return f"{s['p50']:.2f} / {s['p99']:.2f}" if s else "–"

        def ratio(key, a, b):
            if a in lat[key] and b in lat[key]:
                return f"{lat[key][a]['p50'] / lat[key][b]['p50']:.2f}x"
            return "–"

        head = [
            "operation",
            "ours p50/p99",
            "plain uvicorn p50/p99",
            "reference p50/p99",
            "ours/reference p50",
            "ours/uvicorn p50",
        ]
        rows = [
            [
                label,
                cell(k, "ours"),
                cell(k, "uvicorn"),
                cell(k, "reference"),
                ratio(k, "ours", "reference"),
                ratio(k, "ours", "uvicorn"),
            ]
            for k, label, _, _ in ops
        ]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        line = lambda r: (  # noqa: E731
            "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " |"
        )
        print()
        print(
            f"Hosts API latency, ms (n={args.n} sequential requests each, {WARMUP} warm-up, "
            f"keep-alive httpx.Client; ours browses a host on Ray node {NODE_IP})"
        )
        print(line(head))
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in rows:
            print(line(r))
        print()
        cs = result["ours_cold_start"]
        print(
            f"cold start, ours: `omnigent serve` launch -> first 200 GET /healthz "
            f"{cs['healthz_first_200_s']:.1f} s; -> ready line (local host registered) "
            f"{cs['ready_s']:.1f} s"
        )
        if ref:
            rc = result["reference_cold_start"]
            print(
                f"cold start, reference: `omnigent server` launch -> first 200 GET /health "
                f"{rc['health_first_200_s']:.1f} s"
            )

        def mem_line(tag, m):
            parts = [
                f"ours head (server + embedded Ray head + workers) "
                f"{m['ours_head']['rss_mib']:.0f} MiB RSS / {m['ours_head']['pss_mib']:.0f} "
                f"PSS in {m['ours_head']['processes']} procs",
                f"ours worker node {m['ours_worker_node']['rss_mib']:.0f} RSS / "
                f"{m['ours_worker_node']['pss_mib']:.0f} PSS "
                f"({m['ours_worker_node']['processes']} procs)",
            ]
            if "reference" in m:
                parts.append(
                    f"reference (server + host) {m['reference']['rss_mib']:.0f} RSS / "
                    f"{m['reference']['pss_mib']:.0f} PSS "
                    f"({m['reference']['processes']} procs)"
                )
            parts.append(f"plain uvicorn {m['uvicorn']['rss_mib']:.0f} RSS")
            print(f"idle memory, {tag} (MiB): " + "; ".join(parts))

        mem_line("5 s after start", mem_start)
        mem_line("5 s after the load", mem_load)
        print(
            f"response bytes, GET /v1/hosts: {result['hosts_body_bytes']}; "
            f"filesystem 100: {result['fs_body_bytes']}"
        )
        print(
            f"HostActor of the browsed host found under the worker node's processes: "
            f"{result['ours_host_actor_on_node']}"
        )
        print(
            f"other activity on the machine (before / after measuring): {activity[0]} / "
            f"{activity[1]}"
        )
        if result["token_line_race_hit"]:
            print(
                "note: tests.procs.Server read a log line as the token this time "
                "(corrected from $HOME/.omnigent/token)"
            )
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
            print(f"wrote {args.json}")
        return 0
    finally:
        log("stopping everything started here")
        for c in clients:
            c.close()
        kill_group(ref_host, "reference host")
        kill_group(ref_server, "reference server")
        kill_group(baseline, "baseline")
        # Ray workers call setsid, so they are not in our groups: remember every process
        # of our trees now, and make sure none outlives the stop.
        ours_procs = [
            p
            for x in (server and server.proc, node and node.proc)
            if x
            for p in proc_tree(x.popen.pid)
        ]
        if node:
            node.kill()
        if server and server.proc:
            server.stop()
        deadline = time.monotonic() + 10
        while True:
            left = [p for p in ours_procs if p.alive()]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        for p in left:
            log(f"killing leftover {p.pid} {p.name()}")
            try:
                p.kill()
            except OSError:
                pass
        for d in tmp_dirs:
            shutil.rmtree(d, ignore_errors=True)
        log("done")


if __name__ == "__main__":
    sys.exit(main())
