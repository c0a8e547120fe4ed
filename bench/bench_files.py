"""File upload and download: our server beside plain uvicorn streaming the same upload to
disk, in one run, with the peak RSS of every process on the path.

    .venv/bin/python bench/bench_files.py [--reps 3] [--sizes 100,1024]
                                          [--client auto|curl|httpx] [--json out.json]

Two files of random bytes are made once in a temp dir (100 MiB and 1 GiB by default).
Ours is `omnigent serve` (tests.procs.Server): an upload is
  client -> API replica (Serve replica serving the port itself: session check on the
  ControlActor, `omnigent.api.uploads.receive` streams the multipart body to a staging
  file, sha256 on the way, fsync) -> ControlActor.add_file (rename into place, metadata)
and a download is ControlActor.get_file, then the replica streams the file (`_Download`,
1 MiB chunks). "uvicorn" (bench/baseline_files_app.py) is plain uvicorn + FastAPI doing
the same work in one process: the same `receive`, the same rename, the same `_Download`
with the same headers; no Ray.

Each transfer is repeated --reps times per server, the servers interleaved (the order
flips every repetition). An upload is POST .../resources/files (multipart, part `file`)
and is checked: 201, and the response's sha256 and byte count equal the file's. A
download is GET .../files/{id}/content to nowhere, checked by its byte count; the file is
deleted afterwards. MiB/s = file bytes / the transfer's wall time (curl's time_total, or
the time around the httpx call), median over the repetitions.

Client: curl (`-F file=@path`, `-o /dev/null`; a new connection per transfer) or httpx
(a streamed multipart body: preamble, the file in 1 MiB reads, closing boundary, with a
Content-Length; download with iter_raw, one keep-alive client per server). Neither holds
the file in memory. `--client auto` (the default) times both against both servers on the
smaller file first (3 round trips each, which also warms both servers up) and uses the
faster one for everything. A row marked `<` misses the 0.8x target.

Memory: during every transfer the RSS (VmRSS) of every process of the server's tree (the
`omnigent serve` process group and all descendants: GCS, raylet, agents, Serve
controller, the API replica, the ControlActor, ...; the baseline's one process) is
sampled every 50 ms; in addition each process's VmHWM is reset (`/proc/PID/clear_refs`
5) just before the transfer and read after it, so a peak between samples is not missed.
Reported per process for the largest file: RSS before, peak during, growth = peak -
before (the repetition with the largest growth; all of them are in the JSON, with the
sampled peak, the VmHWM and the RSS right after each transfer). Target: growth <= 64 MiB everywhere.

Every process started here is stopped in `finally` (by process group, and any descendant
that left the group by pid); never `ray stop`, never by name. The temp dir (the test
files, both servers' homes) is removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_hosts import P, fix_token, kill_group, log, proc_tree, wait_http

from tests.procs import Server, base_env, free_port

MIB = 2**20
CHUNK = MIB
SAMPLE_S = 0.05
TARGET_RATIO = 0.8
TARGET_GROWTH_MIB = 64
FILES = "/resources/files"


# --- processes and memory ------------------------------------------------------------
def label(p: P) -> str:
    """A short name from the cmdline: `ray::ControlActor`, `raylet`, `gcs_server`, ..."""
    cmd = p.cmdline()
    if not cmd:
        return p.name()
    if cmd[0].startswith("ray::"):
        return cmd[0].split()[0]
    exe = os.path.basename(cmd[0])
    if exe.startswith("python"):
        args = cmd[1:]
        if args[:1] == ["-m"] and len(args) > 1:
            return f"python -m {args[1]}"
        script = next((a for a in args if not a.startswith("-")), "")
        parts = Path(script).parts
        if "ray" in parts:  # e.g. ray/dashboard/agent.py
            return "/".join(parts[parts.index("ray") :])
        if exe == "omnigent" or os.path.basename(script) == "omnigent":
            return " ".join(["omnigent", *args[1:2]])
        return os.path.basename(script) or exe
    if exe == "omnigent":
        return " ".join(["omnigent", *cmd[1:2]])
    return exe


def tree(root: int) -> dict[int, tuple[P, str]]:
    """pid -> (process, unique label) for `root`'s whole tree."""
    procs = sorted(proc_tree(root), key=lambda p: p.pid)
    names = [label(p) for p in procs]
    out = {}
    for p, n in zip(procs, names, strict=False):
        out[p.pid] = (p, n if names.count(n) == 1 else f"{n}#{p.pid}")
    return out


def status(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes; (0, 0) when it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, hwm


def reset_hwm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Sampler(threading.Thread):
    """RSS of a fixed set of processes every 50 ms, before and during a transfer."""

    def __init__(self, procs: dict[int, tuple[P, str]]) -> None:
        super().__init__(daemon=True)
        self.procs = procs
        self.hwm_reset = {pid: reset_hwm(pid) for pid in procs}
        self.before = {pid: status(pid)[0] for pid in procs}
        self.peak = dict(self.before)
        self.samples = 0
        self.halt = threading.Event()

    def _sample(self) -> None:
        for pid in self.procs:
            rss = status(pid)[0]
            self.peak[pid] = max(self.peak[pid], rss)
        self.samples += 1

    def run(self) -> None:
        while not self.halt.wait(SAMPLE_S):
            self._sample()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.halt.set()
        self.join()
        self._sample()
        self.after = {pid: status(pid) for pid in self.procs}

    def report(self) -> dict:
        out = {}
        for pid, (_, name) in self.procs.items():
            rss, hwm = self.after[pid]
            sampled = self.peak[pid]
            peak = max(sampled, hwm) if self.hwm_reset[pid] else sampled
            out[name] = {
                "pid": pid,
                "before_mib": round(self.before[pid] / MIB, 1),
                "peak_mib": round(peak / MIB, 1),
                "growth_mib": round((peak - self.before[pid]) / MIB, 1),
                "sampled_peak_mib": round(sampled / MIB, 1),
                "hwm_mib": round(hwm / MIB, 1) if self.hwm_reset[pid] else None,
                "after_mib": round(rss / MIB, 1),
            }
        return out


# --- test files -------------------------------------------------------------------------
def make_file(path: str, size: int) -> str:
    h = hashlib.sha256()
    block = 16 * MIB
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(block, left))
            h.update(b)
            f.write(b)
            left -= len(b)
        f.flush()
        os.fsync(f.fileno())  # no writeback of it left to slow the first transfers
    return h.hexdigest()


# --- clients ------------------------------------------------------------------------------
class Target:
    def __init__(self, name: str, url: str, token: str, root_pid: int) -> None:
        self.name, self.url, self.token, self.root_pid = name, url, token, root_pid
        self.http = httpx.Client(
            base_url=url, timeout=600, headers={"Authorization": f"Bearer {token}"}
        )
        r = self.http.post("/v1/sessions", json={"title": "b", "agent": {"name": "b"}})
        if r.status_code != 201:
            raise RuntimeError(f"{name}: session: {r.status_code} {r.text[:300]}")
        self.base = f"/v1/sessions/{r.json()['id']}{FILES}"

    def delete(self, file_id: str) -> None:
        r = self.http.delete(f"{self.base}/{file_id}")
        if r.status_code != 200:
            raise RuntimeError(f"{self.name}: delete: {r.status_code} {r.text[:300]}")


class Curl:
    name = "curl"

    def __init__(self, tmp: str) -> None:
        self.resp = os.path.join(tmp, "curl-response.json")

    def _run(self, args: list[str]) -> tuple[int, float, int]:
        out = subprocess.run(
            ["curl", "-sS", *args], capture_output=True, text=True, timeout=900, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"curl failed ({out.returncode}): {out.stderr.strip()}")
        code, seconds, size = out.stdout.split()
        return int(code), float(seconds), int(float(size))

    def upload(self, t: Target, path: str) -> tuple[dict, float]:
        code, seconds, _ = self._run(
            [
                "-H",
                f"Authorization: Bearer {t.token}",
                "-H",
                "Expect:",
                "-F",
                f"file=@{path};filename={os.path.basename(path)}",
                "-o",
                self.resp,
                "-w",
                "%{http_code} %{time_total} %{size_upload}",
                t.url + t.base,
            ]
        )
        body = Path(self.resp).read_text()
        if code != 201:
            raise RuntimeError(f"{t.name}: upload: {code} {body[:300]}")
        return json.loads(body), seconds

    def download(self, t: Target, file_id: str) -> tuple[int, float]:
        code, seconds, size = self._run(
            [
                "-H",
                f"Authorization: Bearer {t.token}",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{time_total} %{size_download}",
                f"{t.url}{t.base}/{file_id}/content",
            ]
        )
        if code != 200:
            raise RuntimeError(f"{t.name}: download: {code}")
        return size, seconds


class Httpx:
    name = "httpx"

    def upload(self, t: Target, path: str) -> tuple[dict, float]:
        boundary = uuid.uuid4().hex
        pre = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{os.path.basename(path)}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        post = f"\r\n--{boundary}--\r\n".encode()

        def body():
            yield pre
            with open(path, "rb", buffering=0) as f:
                while chunk := f.read(CHUNK):
                    yield chunk
            yield post

        length = len(pre) + os.path.getsize(path) + len(post)
        s = time.perf_counter()
        r = t.http.post(
            t.base,
            content=body(),
            headers={
                "content-type": f"multipart/form-data; boundary={boundary}",
                "content-length": str(length),
            },
        )
        seconds = time.perf_counter() - s
        if r.status_code != 201:
            raise RuntimeError(f"{t.name}: upload: {r.status_code} {r.text[:300]}")
        return r.json(), seconds

    def download(self, t: Target, file_id: str) -> tuple[int, float]:
        n = 0
        s = time.perf_counter()
        with t.http.stream("GET", f"{t.base}/{file_id}/content") as r:
            if r.status_code != 200:
                raise RuntimeError(f"{t.name}: download: {r.status_code}")
            for chunk in r.iter_raw(CHUNK):
                n += len(chunk)
        return n, time.perf_counter() - s


def roundtrip(client, t: Target, path: str, size: int, digest: str, watch: bool = False) -> dict:
    """Upload, check, download, check, delete. With `watch`, the RSS of the target's
    process tree during each transfer."""
    out: dict = {}
    procs = tree(t.root_pid) if watch else {}
    with Sampler(procs) as up_mem:
        resource, seconds = client.upload(t, path)
    meta = resource["metadata"]
    if meta["sha256"] != digest or meta["bytes"] != size:
        raise RuntimeError(
            f"{t.name}: upload stored {meta['bytes']} bytes, sha256 "
            f"{meta['sha256']}; want {size}, {digest}"
        )
    out["upload_s"] = seconds
    with Sampler(procs) as down_mem:
        got, seconds = client.download(t, resource["id"])
    if got != size:
        raise RuntimeError(f"{t.name}: downloaded {got} bytes, want {size}")
    out["download_s"] = seconds
    t.delete(resource["id"])
    if watch:
        out["memory"] = {
            "upload": up_mem.report(),
            "download": down_mem.report(),
            "samples": {"upload": up_mem.samples, "download": down_mem.samples},
        }
        new = set(tree(t.root_pid)) - set(procs)
        if new:
            out["memory"]["new_processes"] = sorted(new)
    return out


def pick_client(tmp: str, targets: dict, path: str, size: int, digest: str) -> tuple[object, dict]:
    """Both clients against both servers, 3 round trips each (alternating); the one with
    the smaller sum of median upload and download times wins."""
    clients = [Curl(tmp), Httpx()]
    times: dict = {
        c.name: {t: {"upload_s": [], "download_s": []} for t in targets} for c in clients
    }
    for _ in range(3):
        for c in clients:
            for t in targets.values():
                r = roundtrip(c, t, path, size, digest)
                for k in ("upload_s", "download_s"):
                    times[c.name][t.name][k].append(r[k])
    calib: dict = {}
    score = {}
    for name, per in times.items():
        score[name] = sum(statistics.median(v) for ts in per.values() for v in ts.values())
        calib[name] = {
            t: {
                k.replace("_s", "_mib_s"): round(size / MIB / statistics.median(v), 1)
                for k, v in ts.items()
            }
            for t, ts in per.items()
        }
    best = min(clients, key=lambda c: score[c.name])
    return best, calib


# --- the run ----------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="transfers per size and server")
    ap.add_argument("--sizes", default="100,1024", help="file sizes in MiB, comma-separated")
    ap.add_argument("--client", choices=("auto", "curl", "httpx"), default="auto")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sizes = [int(x) for x in args.sizes.split(",")]

    tmp = tempfile.mkdtemp(prefix="omni-bench-files-")
    os.chmod(tmp, 0o755)
    server = baseline = None
    server_tree: dict = {}
    targets: dict[str, Target] = {}
    result: dict = {"reps": args.reps, "sizes_mib": sizes, "sample_interval_s": SAMPLE_S}
    try:
        data = os.path.join(tmp, "data")
        os.mkdir(data)
        files = {}
        for mib in sizes:
            path = os.path.join(data, f"random-{mib}MiB.bin")
            t0 = time.monotonic()
            files[mib] = (path, mib * MIB, make_file(path, mib * MIB))
            log(f"made {path} ({time.monotonic() - t0:.1f}s)")
        warm = os.path.join(data, "warm.bin")
        warm_file = (warm, MIB, make_file(warm, MIB))

        # -- ours ------------------------------------------------------------------------
        server = Server(home=os.path.join(tmp, "server"))
        log(f"starting our server on {server.url}")
        server.start()
        fix_token(server)
        targets["ours"] = Target("ours", server.url, server.token, server.proc.popen.pid)

        # -- plain uvicorn ---------------------------------------------------------------
        bport = free_port()
        bhome = os.path.join(tmp, "baseline")
        os.makedirs(bhome)
        baseline = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "baseline_files_app.py"),
                str(bport),
                server.token,
                os.path.join(bhome, "files"),
            ],
            env=base_env(bhome),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        burl = f"http://127.0.0.1:{bport}"
        wait_http(f"{burl}/healthz", 60, alive=lambda: baseline.poll() is None)
        targets["uvicorn"] = Target("uvicorn", burl, server.token, baseline.pid)
        server_tree = tree(server.proc.popen.pid)
        log(
            f"ours: {len(server_tree)} processes: "
            + ", ".join(sorted(n for _, n in server_tree.values()))
        )

        # -- client --------------------------------------------------------------------------
        small = files[min(sizes)]
        for t in targets.values():  # warm-up: code paths, connections
            for c in (Curl(tmp), Httpx()):
                roundtrip(c, t, *warm_file)
        if args.client == "auto":
            log(f"timing curl and httpx against both servers ({min(sizes)} MiB)")
            client, result["client_calibration"] = pick_client(tmp, targets, *small)
            log(f"client calibration (median MiB/s): {result['client_calibration']}")
        else:
            client = Curl(tmp) if args.client == "curl" else Httpx()
        result["client"] = client.name
        log(f"client: {client.name}")

        # -- measure -----------------------------------------------------------------------------
        runs: dict = {}
        for mib in sizes:
            path, size, digest = files[mib]
            for rep in range(args.reps):
                order = ["ours", "uvicorn"] if rep % 2 == 0 else ["uvicorn", "ours"]
                for name in order:
                    r = roundtrip(client, targets[name], path, size, digest, watch=True)
                    runs.setdefault(str(mib), {}).setdefault(name, []).append(r)
                    log(
                        f"{mib} MiB {name:<7} rep {rep + 1}: upload "
                        f"{mib / r['upload_s']:7.1f} MiB/s, download "
                        f"{mib / r['download_s']:7.1f} MiB/s"
                    )

        # -- report ------------------------------------------------------------------------------
        tput: dict = {}
        for mib in sizes:
            for op in ("upload", "download"):
                row = {}
                for name in ("ours", "uvicorn"):
                    xs = [mib / r[f"{op}_s"] for r in runs[str(mib)][name]]
                    row[name] = {
                        "median_mib_s": round(statistics.median(xs), 1),
                        "runs_mib_s": [round(x, 1) for x in xs],
                    }
                row["ratio"] = round(
                    row["ours"]["median_mib_s"] / row["uvicorn"]["median_mib_s"], 3
                )
                row["target_met"] = row["ratio"] >= TARGET_RATIO
                tput[f"{op} {mib} MiB"] = row
        result["throughput"] = tput

        big = str(max(sizes))
        mem: dict = {}
        for name in ("ours", "uvicorn"):
            per: dict = {}
            for op in ("upload", "download"):
                for r in runs[big][name]:
                    for proc, m in r["memory"][op].items():
                        cur = per.setdefault(proc, {}).get(op)
                        if cur is None or m["growth_mib"] > cur["growth_mib"]:
                            per[proc][op] = m
            mem[name] = per
        worst = max(m[op]["growth_mib"] for per in mem.values() for m in per.values() for op in m)
        result["memory_largest_file"] = {
            "size_mib": int(big),
            "processes": mem,
            "max_growth_mib": worst,
            "target_met": worst <= TARGET_GROWTH_MIB,
        }
        result["runs"] = runs

        print(f"\nclient: {client.name}; median of {args.reps}, MiB/s")
        print(
            f"{'operation':<18} {'ours':>9} {'uvicorn':>9} {'ours/uvicorn':>13}   "
            f"runs: ours | uvicorn"
        )
        for op, row in tput.items():
            runs_txt = (
                " ".join(f"{x:.0f}" for x in row["ours"]["runs_mib_s"])
                + " | "
                + " ".join(f"{x:.0f}" for x in row["uvicorn"]["runs_mib_s"])
            )
            print(
                f"{op:<18} {row['ours']['median_mib_s']:>9.1f} "
                f"{row['uvicorn']['median_mib_s']:>9.1f} {row['ratio']:>12.2f}x"
                f"{' ' if row['target_met'] else '<'}  {runs_txt}"
            )
        print(
            f"\nRSS (MiB) per process, {big} MiB file (the repetition with the largest "
            f"growth): before / peak / growth"
        )
        print(f"{'server':<8} {'process':<52} {'upload':>22} {'download':>22}")
        for name, per in mem.items():
            for proc in sorted(per, key=lambda p: -max(per[p][o]["growth_mib"] for o in per[p])):
                cells = []
                for op in ("upload", "download"):
                    m = per[proc].get(op)
                    cells.append(
                        f"{m['before_mib']:>6.0f} /{m['peak_mib']:>6.0f} /{m['growth_mib']:>+7.1f}"
                        if m
                        else "-"
                    )
                flag = (
                    "  > 64"
                    if any(per[proc][o]["growth_mib"] > TARGET_GROWTH_MIB for o in per[proc])
                    else ""
                )
                print(f"{name:<8} {proc[:52]:<52} {cells[0]:>22} {cells[1]:>22}{flag}")
        print(
            f"\nlargest growth: {worst:.1f} MiB "
            f"({'within' if worst <= TARGET_GROWTH_MIB else 'over'} the "
            f"{TARGET_GROWTH_MIB} MiB target)"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
            log(f"wrote {args.json}")
    finally:
        for t in targets.values():
            t.http.close()
        kill_group(baseline, "baseline")
        if server is not None and server.proc is not None:
            leftovers = dict(server_tree)
            leftovers.update(tree(server.proc.popen.pid))
            server.stop()
            for pid, (p, name) in leftovers.items():
                if p.alive():
                    log(f"killing leftover {pid} {name}")
                    try:
                        p.kill()
                    except OSError:
                        pass
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
