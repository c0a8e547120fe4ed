"""Environment operations: our server beside plain uvicorn and the reference server
(Omnigent 0.19.0), in one run.

    .venv/bin/python bench/bench_env.py [--n 300] [--n-search 40] [--json out.json]
                                        [--no-reference]

Each server gets its own copy of one workspace (on the Ray node's HOME for ours):
  list1000/   1,000 files      read10k.txt  10 KiB of text     edit.txt
  t5k/        50 dirs x 100 files (5,000)   t50k/  500 dirs x 100 files (50,000)
  (10 files named needle_*.txt are spread through each tree)

Ours runs the session's runner on a non-head Ray node (127.0.0.41), so every request goes
client -> API replica -> the runner's process on the host. "uvicorn" serves the same app
our runner serves, in-process (bench/baseline_env_app.py). Operations, p50/p99 in ms over
sequential requests on one keep-alive httpx.Client per server, the servers interleaved in
chunks so background noise hits them alike:
  list      GET  .../filesystem/list1000?limit=100  (first 100 of 1,000)
  read      GET  .../filesystem/read10k.txt
  write     PUT  .../filesystem/written.txt  (10 KiB)
  edit      PATCH .../filesystem/edit.txt   (alternately alpha->omega, omega->alpha)
  shell     POST .../shell {"command": "true"}
  changes   GET  .../changes  (a few changed files)
  resources GET  /v1/sessions/{id}/resources  (the generic inventory: the runner's
            resources, plus the session's files and moved-in terminals for ours)
  changes1k GET  .../changes  after one shell command created 1,000 files (the first
            call, which finds them, is timed on its own; later ones are answered from
            the tracker's cache until the next filesystem event)
  search5k  GET  .../search/t5k?q=needle     search50k  .../search/t50k?q=needle

Every process started here is stopped in `finally` (by process group); never `ray stop`.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_hosts import fix_token, kill_group, log, start_reference, summary, wait_http  # noqa: E402

from tests.procs import RayNode, Server, base_env, free_port  # noqa: E402

NODE_IP = "127.0.0.41"
CHUNK = 25
ENV = "/resources/environments/default"
TEN_KIB = ("0123456789abcdef" * 64 + "\n") * 10
REF_AGENT = """spec_version: 1
name: bench-agent
executor: {type: omnigent, model: m, config: {harness: open-responses}}
prompt: bench
os_env: {type: caller_process, cwd: ., sandbox: {type: none}}
terminals: {shell: {command: bash, args: [--norc, --noprofile]}}
"""


def make_workspace(path: str) -> str:
    os.makedirs(path)
    d = os.path.join(path, "list1000")
    os.mkdir(d)
    for i in range(1000):
        with open(os.path.join(d, f"e_{i:04d}.txt"), "w") as f:
            f.write(str(i))
    with open(os.path.join(path, "read10k.txt"), "w") as f:
        f.write(TEN_KIB[:10240])
    with open(os.path.join(path, "edit.txt"), "w") as f:
        f.write("header\nalpha\nfooter\n")
    for tree, dirs in (("t5k", 50), ("t50k", 500)):
        for i in range(dirs):
            sub = os.path.join(path, tree, f"d{i:03d}")
            os.makedirs(sub)
            for j in range(100):
                name = f"needle_{i}.txt" if j == 0 and i % (dirs // 10) == 0 else f"f{j:03d}.py"
                with open(os.path.join(sub, name), "w") as f:
                    f.write("x")
    return path


def ref_session(client: httpx.Client) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = REF_AGENT.encode()
        info = tarfile.TarInfo("config.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    r = client.post(
        "/v1/sessions",
        files={
            "metadata": (None, json.dumps({"title": "bench"}), "application/json"),
            "bundle": ("bundle.tar.gz", buf.getvalue(), "application/gzip"),
        },
    )
    r.raise_for_status()
    return r.json()["session_id"]


def wait_env(client: httpx.Client, base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"{base}{ENV}/filesystem/read10k.txt")
        if r.status_code == 200:
            return
        time.sleep(0.2)
    raise TimeoutError(f"environment of {base} not ready: {r.status_code} {r.text[:200]}")


def operations(base: str) -> list[tuple[str, str, str, dict | None]]:
    e = base + ENV
    return [
        ("list", "GET", f"{e}/filesystem/list1000?limit=100", None),
        ("read", "GET", f"{e}/filesystem/read10k.txt", None),
        ("write", "PUT", f"{e}/filesystem/written.txt", {"content": TEN_KIB[:10240]}),
        ("edit", "PATCH", f"{e}/filesystem/edit.txt", None),  # body alternates
        ("shell", "POST", f"{e}/shell", {"command": "true"}),
        ("changes", "GET", f"{e}/changes", None),
        ("resources", "GET", f"{base}/resources", None),
    ]


def check(name: str, r: httpx.Response) -> httpx.Response:
    if r.status_code not in (200, 201):
        raise RuntimeError(f"{name}: {r.status_code} {r.text[:300]}")
    return r


def measure(targets: dict, ops: list[str], n: int, samples: dict) -> None:
    """Interleave the servers in chunks of CHUNK requests per operation."""
    flip = {t: False for t in targets}
    for _ in range(math.ceil(n / CHUNK)):
        for op in ops:
            for t, (client, table) in targets.items():
                method, url, body = table[op]
                xs = samples[op].setdefault(t, [])
                for _ in range(min(CHUNK, n - len(xs))):
                    if op == "edit":
                        flip[t] = not flip[t]
                        old, new = ("alpha", "omega") if flip[t] else ("omega", "alpha")
                        body = {"old_text": old, "new_text": new}
                    s = time.perf_counter()
                    r = client.request(method, url, json=body)
                    xs.append((time.perf_counter() - s) * 1000)
                    check(f"{t} {op}", r)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="requests per quick operation")
    ap.add_argument("--n-search", type=int, default=40, help="requests per search")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    tmp = tempfile.mkdtemp(prefix="omni-bench-env-")
    server = node = baseline = ref_server = ref_host = None
    clients: list[httpx.Client] = []
    result: dict = {"n": args.n, "n_search": args.n_search}
    try:
        node_home = os.path.join(tmp, "node")
        log("making three copies of the workspace (55,000 files each)")
        ws = {"ours": make_workspace(os.path.join(node_home, "ws-ours"))}
        for t in ("uvicorn", "reference"):
            ws[t] = os.path.join(node_home, f"ws-{t}")
            subprocess.run(["cp", "-a", ws["ours"], ws[t]], check=True)

        # -- ours ----------------------------------------------------------------------
        server = Server(home=os.path.join(tmp, "server")).start()
        fix_token(server)
        node = RayNode(server, NODE_IP, node_home).wait_started()
        with server.client(server.token) as c:
            host_id = node.wait_host(c)
        ours = server.client(server.token)
        clients.append(ours)
        r = ours.post(
            "/v1/sessions",
            json={
                "title": "bench",
                "agent": {"name": "bench"},
                "host_id": host_id,
                "workspace": ws["ours"],
            },
        )
        check("ours session", r)
        t0 = time.monotonic()
        ours_base = f"/v1/sessions/{r.json()['id']}"
        wait_env(ours, ours_base)
        log(f"ours: runner up on {NODE_IP} ({time.monotonic() - t0:.1f}s after launch)")

        # -- plain uvicorn --------------------------------------------------------------
        bport = free_port()
        baseline = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "baseline_env_app.py"),
                str(bport),
                server.token,
                ws["uvicorn"],
                os.path.join(tmp, "baseline-state"),
            ],
            env=base_env(os.path.join(tmp, "base-home")),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        burl = f"http://127.0.0.1:{bport}"
        wait_http(f"{burl}/healthz", 60, alive=lambda: baseline.poll() is None)
        base = httpx.Client(
            base_url=burl, timeout=60, headers={"Authorization": f"Bearer {server.token}"}
        )
        clients.append(base)

        targets = {"ours": (ours, ours_base), "uvicorn": (base, "/v1/sessions/bench")}

        # -- reference --------------------------------------------------------------------
        if not args.no_reference:
            ref_home = os.path.join(tmp, "ref-home")
            os.makedirs(ref_home)
            ref_server, ref_host, rurl, ref_host_id = start_reference(ref_home)
            ref = httpx.Client(base_url=rurl, timeout=60)
            clients.append(ref)
            sid = ref_session(ref)
            check(
                "reference launch",
                ref.post(
                    f"/v1/hosts/{ref_host_id}/runners",
                    json={"session_id": sid, "workspace": ws["reference"]},
                ),
            )
            wait_env(ref, f"/v1/sessions/{sid}")
            targets["reference"] = (ref, f"/v1/sessions/{sid}")
            log(f"reference up on {rurl}, session {sid}")

        tables = {
            t: {op: (m, url, body) for op, m, url, body in operations(b)}
            for t, (_, b) in targets.items()
        }
        live = {t: (targets[t][0], tables[t]) for t in targets}

        # -- same answers? ------------------------------------------------------------------
        for t, (client, table) in live.items():
            names = [e["name"] for e in check(t, client.get(table["list"][1])).json()["data"]]
            assert len(names) == 100 and names[0] == "e_0999.txt", (t, names[:3])
            body = check(t, client.get(table["read"][1])).json()
            assert body["content"] == TEN_KIB[:10240], t
        log("listings and reads agree")

        # -- quick operations ----------------------------------------------------------------
        quick = ["list", "read", "write", "edit", "shell", "changes", "resources"]
        warm: dict = {op: {} for op in quick}
        measure(live, quick, 20, warm)
        samples: dict = {op: {} for op in quick}
        log(f"measuring {args.n} requests per quick operation and server")
        measure(live, quick, args.n, samples)
        few = {
            t: len(check(t, c.get(tb["changes"][1])).json()["data"]) for t, (c, tb) in live.items()
        }
        result["changes_few_count"] = few

        # -- changes with 1,000 changed files ------------------------------------------------
        make = {
            "command": "mkdir -p many && cd many && for i in $(seq 1000); do "
            "echo $i > f$i.txt; done"
        }
        counts, first = {}, {}
        for t, (client, table) in live.items():
            check(t, client.post(table["shell"][1], json=make))
            s = time.perf_counter()
            r = check(t, client.get(table["changes"][1]))
            first[t] = round((time.perf_counter() - s) * 1000, 2)
            counts[t] = len(r.json()["data"])
        result["changes_1k_count"] = counts
        result["changes_1k_first_call_ms"] = first  # the call that finds the 1,000 files
        log(f"first changes call after 1,000 files created (ms): {first}")
        log(f"changes after 1,000 files created: {counts}")
        samples["changes1k"] = {}
        for _client, table in live.values():
            table["changes1k"] = table["changes"]
        measure(live, ["changes1k"], args.n // 3, samples)

        # -- search ----------------------------------------------------------------------------
        hits = {}
        for tree in ("5k", "50k"):
            op = f"search{tree}"
            for t, (client, table) in live.items():
                prefix = table["changes"][1].rsplit("/changes", 1)[0]
                table[op] = ("GET", f"{prefix}/search/t{tree}?q=needle", None)
                hits.setdefault(op, {})[t] = len(check(t, client.get(table[op][1])).json()["data"])
            samples[op] = {}
            measure(live, [op], args.n_search, samples)
        result["search_hits"] = hits
        log(f"search hits: {hits}")

        lat = {op: {t: summary(xs) for t, xs in per.items()} for op, per in samples.items()}
        result["latency_ms"] = lat

        # -- report ------------------------------------------------------------------------------
        has_ref = "reference" in live
        print(
            f"\n{'operation':<11} {'ours p50/p99':>16} {'uvicorn p50/p99':>17}"
            + (f" {'reference p50/p99':>19} {'ours/ref':>9}" if has_ref else "")
            + f" {'ours/uvicorn':>13}"
        )
        for op, per in lat.items():
            o, u = per["ours"], per["uvicorn"]
            line = f"{op:<11} {o['p50']:>7.2f}/{o['p99']:<8.2f} {u['p50']:>8.2f}/{u['p99']:<8.2f}"
            if has_ref:
                rr = per["reference"]
                line += f" {rr['p50']:>9.2f}/{rr['p99']:<9.2f} {o['p50'] / rr['p50']:>8.2f}x"
            line += f" {o['p50'] / u['p50']:>12.2f}x"
            print(line)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
    finally:
        for c in clients:
            c.close()
        kill_group(ref_host, "reference host")
        kill_group(ref_server, "reference server")
        kill_group(baseline, "baseline")
        if node:
            node.kill()
        if server:
            server.stop()
        subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
