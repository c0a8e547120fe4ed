"""Terminals: keystroke -> echo round trip and bulk output throughput, our server beside a
pty in this process and the reference server (Omnigent 0.19.0), in one run.

    .venv/bin/python bench/bench_terminals.py [--n 1000] [--warmup 100] [--bulk-mib 100]
                                              [--bulk-runs 3] [--json out.json]
                                              [--no-reference] [--deflate]

Targets
  ours       a session whose runner is on a non-head Ray node (127.0.0.41): client WS ->
             API replica (aiohttp relay) -> the RunnerActor's data server (uvicorn WS) ->
             the pty there. Terminal `shell` = `bash --norc --noprofile`.
  local pty  the same bash on a pty forked by this process, blocking os.write / os.read:
             the floor (no WebSocket, no server).
  reference  `omnigent server` + `omnigent host` 0.19.0, same terminal spec (tmux there).

Every WebSocket target uses the same client: the `websockets` asyncio client on one
uvloop event loop, binary frames, no compression (`--deflate` offers permessage-deflate
instead, as a browser would), no size limit, no client pings.

Echo: on a terminal of its own (session_key "bench"), after the replay has drained,
`stty -icanon -echo min 1 time 0; cat` is typed, so one byte in gives exactly one byte
out (written back by `cat`, not echoed by the tty). A sample is the time from sending
one letter (cycling a..z) to receiving it. `--warmup` samples first, then `--n`; the
targets are interleaved in chunks of 100 samples so background noise hits them alike.

Bulk: on another terminal (session_key "bulk", normal tty mode) `cat <file>; echo
END-$((1+1))` is typed; the time from sending that line to `END-2` arriving at the
client. The file is `--bulk-mib` MiB of printable bytes without newlines, so the pty does
not expand anything (one file, in our workspace on the node's HOME; every target cats it
by its absolute path); the bytes received are counted too. If the server closes the
connection during a run (ours closes a client with 1013 when it falls more than 4 MiB
behind), the run is reported as "<code>@<MB received>" and the client attaches again.
MB/s = file bytes / 1e6 / time (MiB/s in the JSON). `--bulk-runs` runs per target,
interleaved. Per run the JSON also has the frames received (reads, for the local pty),
their mean size and the client's CPU seconds.

Also recorded: the commit and any changed server files (the run measures the working
tree), where our terminal programs run (under the worker node's process tree or not), and
the machine's load before and after (another session may be running tests here).

Every process started here is stopped in `finally` (by process group, plus any process
left with one of our temporary HOMEs, e.g. the reference's tmux server); never `ray
stop`, never by name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_env import ref_session
from bench_hosts import (
    all_procs,
    fix_token,
    kill_group,
    log,
    proc_tree,
    start_reference,
    summary,
)

from tests.procs import RayNode, Server

NODE_IP = "127.0.0.41"
CHUNK = 100
SHELL = {"command": "bash", "args": ["--norc", "--noprofile"]}
AGENT = {"name": "b", "terminals": {"shell": SHELL}}
SETUP = b"stty -icanon -echo min 1 time 0; cat\n"
MARK = b"END-2"
LETTERS = [bytes([c]) for c in range(ord("a"), ord("z") + 1)]
TIMEOUT = 10.0  # one echo
BULK_TIMEOUT = 600.0  # one bulk run


class Dropped(Exception):
    """The server closed the connection in the middle of a bulk run."""

    def __init__(self, code: int | None, received: int, seconds: float) -> None:
        super().__init__(f"closed with code {code} after {received} bytes, {seconds:.2f} s")
        self.code, self.received, self.seconds = code, received, seconds


# --- targets ----------------------------------------------------------------------------
class WsTerm:
    """One attached WebSocket client of a terminal."""

    def __init__(self, ws, url: str, headers: dict, deflate: bool) -> None:
        self.ws = ws
        self.url, self.headers, self.deflate = url, headers, deflate
        self.received = 0
        self.frames = 0

    @staticmethod
    async def _open(url: str, headers: dict, deflate: bool):
        return await websockets.connect(
            url,
            additional_headers=headers,
            compression="deflate" if deflate else None,
            max_size=None,
            ping_interval=None,
            open_timeout=30,
            close_timeout=2,
        )

    @classmethod
    async def connect(cls, url: str, headers: dict, deflate: bool) -> WsTerm:
        return cls(await cls._open(url, headers, deflate), url, headers, deflate)

    async def reconnect(self) -> None:
        """After the server closed this client (e.g. 1013, too slow): attach again."""
        try:
            await self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        self.ws = await self._open(self.url, self.headers, self.deflate)

    async def recv(self) -> bytes:
        while True:
            m = await self.ws.recv()
            if isinstance(m, bytes):
                self.received += len(m)
                self.frames += 1
                return m

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def drain(self, quiet: float = 0.5, limit: float = 30) -> int:
        """Read until nothing arrives for `quiet` seconds; the bytes read."""
        n = 0
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                async with asyncio.timeout(quiet):
                    n += len(await self.recv())
            except TimeoutError:
                return n
        raise TimeoutError("the terminal kept talking")

    async def echo(self, ch: bytes) -> float:
        async with asyncio.timeout(TIMEOUT):
            t = time.perf_counter()
            await self.ws.send(ch)
            while ch not in await self.recv():
                pass
            return (time.perf_counter() - t) * 1000

    async def bulk(self, line: bytes) -> tuple[float, int]:
        async with asyncio.timeout(BULK_TIMEOUT):
            n = 0
            tail = b""
            t = time.perf_counter()
            await self.ws.send(line)
            while True:
                try:
                    m = await self.recv()
                except websockets.ConnectionClosed as exc:
                    raise Dropped(
                        exc.rcvd.code if exc.rcvd else None, n, time.perf_counter() - t
                    ) from None
                n += len(m)
                if MARK in m or MARK in tail + m[: len(MARK)]:
                    return time.perf_counter() - t, n
                tail = m[-(len(MARK) - 1) :]

    async def close(self) -> None:
        await self.ws.close()


class LocalPty:
    """The same bash on a pty of this process; blocking reads and writes."""

    def __init__(self, cwd: str) -> None:
        env = {**os.environ, "TERM": "xterm-256color"}
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.chdir(cwd)
                os.execvpe(SHELL["command"], [SHELL["command"], *SHELL["args"]], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.received = 0
        self.frames = 0

    def _read(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            raise TimeoutError
        data = os.read(self.fd, 65536)
        self.received += len(data)
        self.frames += 1
        return data

    async def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def drain(self, quiet: float = 0.5, limit: float = 30) -> int:
        n = 0
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                n += len(self._read(quiet))
            except TimeoutError:
                return n
        raise TimeoutError("the terminal kept talking")

    async def echo(self, ch: bytes) -> float:
        t = time.perf_counter()
        os.write(self.fd, ch)
        while ch not in self._read(TIMEOUT):
            pass
        return (time.perf_counter() - t) * 1000

    async def bulk(self, line: bytes) -> tuple[float, int]:
        n = 0
        tail = b""
        t = time.perf_counter()
        os.write(self.fd, line)
        deadline = time.monotonic() + BULK_TIMEOUT
        while time.monotonic() < deadline:
            m = self._read(BULK_TIMEOUT)
            n += len(m)
            if MARK in m or MARK in tail + m[: len(MARK)]:
                return time.perf_counter() - t, n
            tail = m[-(len(MARK) - 1) :]
        raise TimeoutError

    async def close(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self.fd)


# --- helpers ----------------------------------------------------------------------------
def make_bulk_file(path: str, mib: int) -> int:
    """Printable bytes, no newline, no "END-2" (the alphabet below has no '-')."""
    block = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/" * 1024  # 64 KiB
    with open(path, "wb") as f:
        f.writelines(block for _ in range(mib * 16))
    return mib * 2**20


def launch_terminal(client: httpx.Client, base: str, key: str, timeout: float = 120) -> str:
    """POST …/resources/terminals until the runner answers (it may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.post(
            f"{base}/resources/terminals", json={"terminal": "shell", "session_key": key}
        )
        if r.status_code in (200, 201):
            return r.json()["id"]
        if time.monotonic() > deadline:
            raise RuntimeError(f"launch terminal {key} at {base}: {r.status_code} {r.text[:300]}")
        time.sleep(0.3)


def procs_with_home(home: str) -> list:
    """Processes whose environment has HOME=<home> (e.g. a daemonized tmux server)."""
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


def placement(cwd: str, node_pid: int, server_pid: int) -> dict:
    """Where the bash processes running in `cwd` are: under the worker node's process
    tree (a RunnerActor on the node), under the server's (the head), or elsewhere."""
    cwd = os.path.realpath(cwd)
    node = {p.pid for p in proc_tree(node_pid)}
    head = {p.pid for p in proc_tree(server_pid)}
    out = {"node": 0, "head": 0, "elsewhere": 0}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = {"node": 0, "head": 0, "elsewhere": 0}
        for p in all_procs():
            try:
                if p.name() != "bash" or os.readlink(f"/proc/{p.pid}/cwd") != cwd:
                    continue
            except OSError:
                continue
            out["node" if p.pid in node else "head" if p.pid in head else "elsewhere"] += 1
        if sum(out.values()) >= 2:
            break
        time.sleep(0.2)
    return out


def code_version() -> dict:
    """The commit, and the server files that differ from it (the run measures the working
    tree: the Ray workers import the code from it when they start)."""

    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True)
        return r.stdout.strip()

    dirty = git("diff", "--name-only", "HEAD", "--", "actors", "omnigent", "serve_app.py")
    return {"head": git("rev-parse", "--short", "HEAD"), "server_files_changed": dirty.split()}


def ref_terminal_dirs() -> set[str]:
    """The reference keeps each terminal's tmux socket in /tmp/omnigent-terminal-*."""
    import glob

    return set(glob.glob("/tmp/omnigent-terminal-*"))


def remove_dead_terminal_dirs(dirs: set[str]) -> None:
    """Remove those of `dirs` whose owner (first line of owner.pid) is gone."""
    for d in dirs:
        try:
            with open(os.path.join(d, "owner.pid")) as f:
                owner = int(f.readline().strip())
        except (OSError, ValueError):
            owner = None
        if owner is None or not os.path.exists(f"/proc/{owner}"):
            shutil.rmtree(d, ignore_errors=True)


def load() -> dict:
    return {
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "pytest_procs": sum("pytest" in " ".join(p.cmdline()) for p in all_procs()),
    }


# --- the run ----------------------------------------------------------------------------
async def measure(targets: dict, args) -> dict:
    """targets: name -> (echo terminal, bulk terminal)."""
    result: dict = {}
    # -- echo ---------------------------------------------------------------------------
    for name, (term, _) in targets.items():
        replay = await term.drain()
        await term.send(SETUP)
        after = await term.drain()
        got = await term.echo(b"x")
        log(f"{name}: replay {replay} B, setup answer {after} B, first echo {got:.2f} ms")
    i = 0
    for phase, n in (("warmup", args.warmup), ("measured", args.n)):
        samples = {t: [] for t in targets}
        while any(len(xs) < n for xs in samples.values()):
            for name, (term, _) in targets.items():
                xs = samples[name]
                for _ in range(min(CHUNK, n - len(xs))):
                    xs.append(await term.echo(LETTERS[i % 26]))
                    i += 1
        if phase == "measured":
            result["echo_ms"] = {t: summary(xs) for t, xs in samples.items()}
            result["echo_samples_ms"] = {t: [round(x, 4) for x in xs] for t, xs in samples.items()}
    for name, (term, _) in targets.items():  # nothing unexpected came back
        extra = await term.drain(0.3)
        if extra:
            log(f"{name}: {extra} unexpected bytes after the echo samples")

    # -- bulk ---------------------------------------------------------------------------
    line = f"cat {args.bulk_path}; echo END-$((1+1))\n".encode()
    for _, term in targets.values():
        await term.drain()
    bulk: dict = {t: [] for t in targets}
    for run in range(args.bulk_runs):
        for name, (_, term) in targets.items():
            frames, cpu = term.frames, time.process_time()
            try:
                secs, n = await term.bulk(line)
            except Dropped as exc:
                log(f"{name}: bulk run {run + 1} failed: the server {exc}; attaching again")
                bulk[name].append(
                    {
                        "error": "dropped",
                        "close_code": exc.code,
                        "bytes_before_close": exc.received,
                        "seconds_to_close": round(exc.seconds, 3),
                    }
                )
                # The cat goes on without this client: let it finish, then attach again
                # (the replay is the last MiB) and go on.
                for _ in range(5):
                    await asyncio.sleep(5)
                    try:
                        await term.reconnect()
                        log(
                            f"{name}: {await term.drain(1.0, limit=120)} bytes drained "
                            "after attaching again"
                        )
                        break
                    except websockets.ConnectionClosed as again:
                        log(f"{name}: closed again while draining: {again!r}")
                continue
            except TimeoutError as exc:
                log(f"{name}: bulk run {run + 1} failed: {exc!r}")
                bulk[name].append({"error": repr(exc)})
                continue
            frames, cpu = term.frames - frames, time.process_time() - cpu
            rest = await term.drain(0.3)
            mbs = args.bulk_bytes / 1e6 / secs
            bulk[name].append(
                {
                    "seconds": round(secs, 3),
                    "mb_s": round(mbs, 1),
                    "mib_s": round(args.bulk_bytes / 2**20 / secs, 1),
                    "bytes_received": n,
                    "bytes_after_mark": rest,
                    "frames": frames,
                    "mean_frame_bytes": n // max(frames, 1),
                    "client_cpu_s": round(cpu, 3),
                }
            )
            log(
                f"{name}: bulk run {run + 1}: {secs:.2f} s, {mbs:.1f} MB/s, "
                f"{n} bytes received in {frames} frames (reads), client CPU {cpu:.2f} s"
            )
    result["bulk"] = bulk
    return result


async def run(args, ws_targets: dict, local: LocalPty, local_bulk: LocalPty) -> dict:
    targets: dict = {}
    try:
        for name in ("ours", "local pty", "reference"):
            if name == "local pty":
                targets[name] = (local, local_bulk)
            elif name in ws_targets:
                url_echo, url_bulk, headers = ws_targets[name]
                targets[name] = (
                    await WsTerm.connect(url_echo, headers, args.deflate),
                    await WsTerm.connect(url_bulk, headers, args.deflate),
                )
        return await measure(targets, args)
    finally:
        for name, pair in targets.items():
            if name != "local pty":
                for t in pair:
                    try:
                        await t.close()
                    except Exception:  # noqa: BLE001
                        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="measured echo samples per target")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--bulk-mib", type=int, default=100)
    ap.add_argument("--bulk-runs", type=int, default=3)
    ap.add_argument(
        "--deflate", action="store_true", help="offer permessage-deflate, as a browser does"
    )
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    tmp = tempfile.mkdtemp(prefix="omni-bench-term-")
    os.chmod(tmp, 0o755)
    server = node = ref_server = ref_host = None
    local = local_bulk = None
    clients: list[httpx.Client] = []
    homes: list[str] = []
    ref_dirs_before = ref_terminal_dirs()
    result: dict = {
        "n": args.n,
        "warmup": args.warmup,
        "chunk": CHUNK,
        "node_ip": NODE_IP,
        "bulk_mib": args.bulk_mib,
        "deflate": args.deflate,
        "client": f"websockets {websockets.__version__} asyncio, uvloop",
    }
    try:
        result["code"] = code_version()
        log(f"code under test: {result['code']}")
        node_home = os.path.join(tmp, "node")
        ws_ours = os.path.join(node_home, "ws-ours")
        os.makedirs(ws_ours)
        homes.append(node_home)
        args.bulk_bytes = make_bulk_file(os.path.join(ws_ours, "bigfile"), args.bulk_mib)
        args.bulk_path = os.path.join(ws_ours, "bigfile")
        log(f"bulk file: {args.bulk_bytes} bytes at {args.bulk_path}")

        # -- ours ----------------------------------------------------------------------
        server = Server(home=os.path.join(tmp, "server")).start()
        homes.append(server.home)
        fix_token(server)
        node = RayNode(server, NODE_IP, node_home).wait_started()
        with server.client(server.token) as c:
            host_id = node.wait_host(c)
        ours = server.client(server.token)
        clients.append(ours)
        r = ours.post(
            "/v1/sessions",
            json={"title": "bench", "agent": AGENT, "host_id": host_id, "workspace": ws_ours},
        )
        if r.status_code not in (200, 201):
            raise RuntimeError(f"ours session: {r.status_code} {r.text[:300]}")
        base = f"/v1/sessions/{r.json()['id']}"
        t0 = time.monotonic()
        ids = {k: launch_terminal(ours, base, k) for k in ("bench", "bulk")}
        log(f"ours: terminals {ids} on {NODE_IP} ({time.monotonic() - t0:.1f}s after launch)")
        wurl = server.url.replace("http://", "ws://")
        auth = {"Authorization": f"Bearer {server.token}"}
        ws_targets = {
            "ours": (
                f"{wurl}{base}/resources/terminals/{ids['bench']}/attach",
                f"{wurl}{base}/resources/terminals/{ids['bulk']}/attach",
                auth,
            )
        }
        # the ptys really are on the node: their bash is under the node's process tree
        result["ours_ptys"] = placement(ws_ours, node.proc.popen.pid, server.proc.popen.pid)
        log(f"ours: terminal programs (bash in the workspace): {result['ours_ptys']}")

        # -- local pty -----------------------------------------------------------------
        local, local_bulk = LocalPty(ws_ours), LocalPty(ws_ours)

        # -- reference -------------------------------------------------------------------
        if not args.no_reference:
            ref_home = os.path.join(tmp, "ref-home")
            ws_ref = os.path.join(ref_home, "ws")
            os.makedirs(ws_ref)
            homes.append(ref_home)
            ref_server, ref_host, rurl, ref_host_id = start_reference(ref_home)
            ref = httpx.Client(base_url=rurl, timeout=60)
            clients.append(ref)
            sid = ref_session(ref)
            r = ref.post(
                f"/v1/hosts/{ref_host_id}/runners", json={"session_id": sid, "workspace": ws_ref}
            )
            if r.status_code not in (200, 201):
                raise RuntimeError(f"reference launch: {r.status_code} {r.text[:300]}")
            rbase = f"/v1/sessions/{sid}"
            rids = {k: launch_terminal(ref, rbase, k) for k in ("bench", "bulk")}
            rws = rurl.replace("http://", "ws://")
            ws_targets["reference"] = (
                f"{rws}{rbase}/resources/terminals/{rids['bench']}/attach",
                f"{rws}{rbase}/resources/terminals/{rids['bulk']}/attach",
                {},
            )
            log(f"reference up on {rurl}, session {sid}, terminals {rids}")

        result["load_before"] = load()
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            measured = runner.run(run(args, ws_targets, local, local_bulk))
        result["load_after"] = load()
        result.update(measured)

        # -- report ------------------------------------------------------------------------
        echo = result["echo_ms"]
        bulk_best = {}
        for t, runs in result["bulk"].items():
            ok = [x["mb_s"] for x in runs if "mb_s" in x]
            bulk_best[t] = {
                "median": sorted(ok)[len(ok) // 2] if ok else None,
                "max": max(ok) if ok else None,
                "runs_ok": len(ok),
            }
        result["bulk_mb_s"] = bulk_best
        names = list(echo)
        print()
        print(
            f"Terminal keystroke echo (n={args.n} after {args.warmup} warm-up, chunks of "
            f"{CHUNK}) and bulk output ({args.bulk_mib} MiB cat, {args.bulk_runs} runs, "
            f"median), {'deflate' if args.deflate else 'no compression'}"
        )
        print(
            f"| {'target':<10} | {'echo p50 ms':>11} | {'echo p99 ms':>11} | "
            f"{'echo mean':>9} | {'bulk MB/s':>9} | {'bulk runs MB/s':<22} |"
        )
        print("|" + "|".join("-" * w for w in (12, 13, 13, 11, 11, 24)) + "|")
        for t in names:
            e, b = echo[t], bulk_best[t]
            runs = ", ".join(
                str(x["mb_s"])
                if "mb_s" in x
                else f"{x['close_code']}@{x['bytes_before_close'] / 1e6:.0f}MB"
                if x.get("error") == "dropped"
                else "timeout"
                for x in result["bulk"][t]
            )
            med = f"{b['median']:.1f}" if b["median"] is not None else "fail"
            print(
                f"| {t:<10} | {e['p50']:>11.3f} | {e['p99']:>11.3f} | {e['mean']:>9.3f} | "
                f"{med:>9} | {runs:<22} |"
            )
        ratios = {}
        for other in [t for t in names if t != "ours"]:
            r = {
                "echo_p50": echo["ours"]["p50"] / echo[other]["p50"],
                "echo_p99": echo["ours"]["p99"] / echo[other]["p99"],
            }
            if bulk_best["ours"]["median"] and bulk_best[other]["median"]:
                r["bulk"] = bulk_best["ours"]["median"] / bulk_best[other]["median"]
            ratios[f"ours/{other}"] = {k: round(v, 2) for k, v in r.items()}
            print(f"ours/{other}: " + ", ".join(f"{k} {v:.2f}x" for k, v in r.items()))
        result["ratios"] = ratios
        o = echo["ours"]
        targets = {
            "echo_p50_le_reference": (o["p50"] <= echo["reference"]["p50"])
            if "reference" in echo
            else None,
            "echo_p99_le_3ms": o["p99"] <= 3.0,
            "bulk_ge_50_mb_s": bool(
                bulk_best["ours"]["median"] and bulk_best["ours"]["median"] >= 50
            ),
        }
        result["targets_met"] = targets
        print(f"targets: {targets}")
        print(f"machine load before / after: {result['load_before']} / {result['load_after']}")
        if args.json:
            slim = dict(result)
            Path(args.json).write_text(json.dumps(slim, indent=1) + "\n")
            print(f"wrote {args.json}")
        return 0
    finally:
        log("stopping everything started here")
        for c in clients:
            c.close()
        for lp in (local, local_bulk):
            if lp is not None:
                try:
                    asyncio.run(lp.close())
                except Exception:  # noqa: BLE001
                    pass
        kill_group(ref_host, "reference host")
        kill_group(ref_server, "reference server")
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
        left += [p for h in homes for p in procs_with_home(h) if p.pid != os.getpid()]
        for p in left:
            if p.alive():
                log(f"killing leftover {p.pid} {p.name()}")
                try:
                    p.kill()
                except OSError:
                    pass
        shutil.rmtree(tmp, ignore_errors=True)
        remove_dead_terminal_dirs(ref_terminal_dirs() - ref_dirs_before)
        log("done")


if __name__ == "__main__":
    sys.exit(main())
