"""Where the time of a host filesystem listing goes: the HostActor called directly from a
Ray driver (no HTTP, no FastAPI), beside the same listing done in-process.

    .venv/bin/python bench/diag_host_actor.py [--n 300]

Starts our server and a node joined on 127.0.0.11 (tests.procs), then joins the
cluster as a driver on the head's IP and times, sequentially with warm-up:
  - hostfs.list_directory in this process (the work alone),
  - ready() (a trivial call) and list_directory() on the head host's and the node host's
    HostActor, with ray.get.
Stops everything it started.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_hosts import fix_token, make_dir, proc_tree  # noqa: E402

from tests.procs import RayNode, Server  # noqa: E402


def p50_p99(fn, n: int, warm: int = 30) -> str:
    for _ in range(warm):
        fn()
    xs = []
    for _ in range(n):
        s = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - s) * 1000)
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return f"{q[49]:.2f} / {q[98]:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    dirs = [tempfile.mkdtemp(prefix="omni-diag-node-"), tempfile.mkdtemp(prefix="omni-diag-srv-")]
    server = node = None
    procs = []
    try:
        path = make_dir(dirs[0])
        server = Server(home=dirs[1]).start()
        fix_token(server)
        node = RayNode(server, "127.0.0.11", dirs[0]).wait_started()
        with server.client(server.token) as c:
            node_host = node.wait_host(c)
        with server.client(server.token) as c:
            head_host = next(
                h["id"] for h in c.get("/v1/hosts").json()["hosts"] if h["id"] != node_host
            )
        procs = [p for x in (server.proc, node.proc) for p in proc_tree(x.popen.pid)]

        if server.ray_token:
            os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=server.ray_token)
        else:
            os.environ["RAY_AUTH_MODE"] = "disabled"
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        import ray

        from omnigent import hostfs

        ns = (
            "omnigent-"
            + hashlib.sha256(
                os.path.realpath(os.path.join(dirs[1], ".omnigent")).encode()
            ).hexdigest()[:10]
        )
        ray.init(
            address=server.ray_address,
            _node_ip_address="127.0.0.10",
            namespace=ns,
            log_to_driver=False,
            logging_level="ERROR",
        )
        try:
            rows = [
                (
                    "listing in-process (hostfs.list_directory)",
                    p50_p99(
                        lambda: hostfs.list_directory(
                            path, dirs[0], limit=100, after=None, before=None
                        ),
                        args.n,
                    ),
                )
            ]
            for tag, hid in (("head", head_host), ("node 127.0.0.11", node_host)):
                h = ray.get_actor(f"host_{hid}", namespace=ns)
                rows.append(
                    (
                        f"ray.get(ready()) on {tag} HostActor",
                        p50_p99(lambda h=h: ray.get(h.ready.remote()), args.n),
                    )
                )
                rows.append(
                    (
                        f"ray.get(list_directory(100)) on {tag} HostActor",
                        p50_p99(
                            lambda h=h: ray.get(h.list_directory.remote(path, 100, None, None)),
                            args.n,
                        ),
                    )
                )
            # The replica's pattern: await the ref on an asyncio loop, with a deadline
            # (actors/calls.py `call`), instead of a blocking ray.get.
            import asyncio

            loop = asyncio.new_event_loop()
            for tag, hid in (("head", head_host), ("node 127.0.0.11", node_host)):
                h = ray.get_actor(f"host_{hid}", namespace=ns)
                rows.append(
                    (
                        f"await wait_for(list_directory(100)) on {tag}",
                        p50_p99(
                            lambda h=h: loop.run_until_complete(
                                asyncio.wait_for(h.list_directory.remote(path, 100, None, None), 5)
                            ),
                            args.n,
                        ),
                    )
                )
                rows.append(
                    (
                        f"await wait_for(ready()) on {tag}",
                        p50_p99(
                            lambda h=h: loop.run_until_complete(
                                asyncio.wait_for(h.ready.remote(), 5)
                            ),
                            args.n,
                        ),
                    )
                )
            loop.close()
        finally:
            ray.shutdown()
        print(f"\nHostActor calls from a driver, ms p50 / p99 (n={args.n})")
        for label, v in rows:
            print(f"  {label:<58} {v}")
        return 0
    finally:
        if node:
            node.kill()
        if server and server.proc:
            server.stop()
        deadline = time.monotonic() + 10
        while any(p.alive() for p in procs) and time.monotonic() < deadline:
            time.sleep(0.25)
        for p in procs:
            if p.alive():
                print(f"killing leftover {p.pid} {p.name()}", file=sys.stderr)
                p.kill()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
