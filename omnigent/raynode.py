"""This machine's Ray node, started and stopped by omnigent (`omnigent ray-start`,
`omnigent ray-stop`, used by cluster.yaml).

`ray-start` wraps `ray start` so that every node of a `ray up` cluster has what it needs:
- token authentication: the cluster token is made on the head (`~/.omnigent/ray_token`),
  shared with the workers through the config's file mounts, and passed to Ray as
  `RAY_AUTH_TOKEN_PATH`, never on a command line;
- enrollment: a worker starts with the join key of its owner (`--worker-owner IP=USER` on
  the head's line; the head's own user by default), so it becomes that user's host;
- the right address: with none given, the node advertises the address this machine was
  reached at over SSH (`SSH_CONNECTION`), i.e. the one listed in the config, even where
  Ray would detect another (several network cards, loopback);
- head fault tolerance (`--gcs-ft`, on the head): Ray's GCS keeps its state in a Redis of
  its own on the head (omnigent.gcs_redis), started first and stopped (its data dropped:
  the cluster is gone on purpose) by `ray-stop`; a head that crashed is started again by
  the same command and finds its workers, runners and terminals still running;
- idempotence: on a machine whose node already runs in this cluster it does nothing, so
  `ray up` can be run again; a node left over from a cluster that is gone is stopped first.

`ray-stop` stops only the Ray processes `ray-start` started (found by a marker in the
raylet's and GCS's environment, and their descendants): `ray down` runs `ray stop`, which
otherwise kills every Ray process on the machine. On the head it stops the server first.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from omnigent import gcs_redis
from omnigent.config import state_dir
from omnigent.credentials import ensure_ray_token, ray_auth_env, server_secret, write_private
from omnigent.domain.enrollment import JOIN_ENV, join_key
from omnigent.nodeprocs import (
    MARK_ENV,
    NODE_FILE,
    cli_arg,
    descendants,
    marked_processes,
    our_raylet,
    ray_bin,
    stop_processes,
)


def ssh_server_address() -> str | None:
    """The address this machine was reached at, if this runs in an SSH session (the
    node's environment, not a server setting: the one place SSH_CONNECTION is read)."""
    parts = os.environ.get("SSH_CONNECTION", "").split()
    return parts[2] if len(parts) == 4 else None


def share_secrets(shared: Path, owners: dict[str, str], admin: str) -> None:
    """On the head: what the workers need, in a directory the config copies to them."""
    state = state_dir()
    token = ensure_ray_token(state).read_text().strip()
    secret = server_secret(state)
    shared.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(shared, 0o700)
    write_private(shared / "ray_token", token + "\n")
    write_private(shared / "join" / "default", join_key(secret, admin) + "\n")
    for ip, user in owners.items():
        write_private(shared / "join" / ip, join_key(secret, user) + "\n")


def take_shared_secrets(shared: Path, node_ip: str | None) -> str:
    """On a worker: the cluster token into the state dir; the join key for this machine."""
    token = (shared / "ray_token").read_text().strip()
    write_private(state_dir() / "ray_token", token + "\n")
    mine = shared / "join" / (node_ip or "-")
    return (mine if mine.exists() else shared / "join" / "default").read_text().strip()


def ray_start(
    ray_args: list[str],
    *,
    shared: Path | None,
    owners: dict[str, str],
    node_ip: str | None,
    admin: str,
    gcs_ft: bool = False,
    redis_port: int | None = None,
) -> int:
    head = "--head" in ray_args
    if gcs_ft and not head:
        print("--gcs-ft is for the head's ray-start line", file=sys.stderr)
        return 2
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    node_ip = node_ip or ssh_server_address()
    env = dict(os.environ)
    if head:
        if shared is not None:
            share_secrets(shared, owners, admin)
        ensure_ray_token(state)
    else:
        if shared is None:
            print("a worker needs --shared-dir (the head's shared secrets)", file=sys.stderr)
            return 2
        env[JOIN_ENV] = take_shared_secrets(shared, node_ip)
    env.update(ray_auth_env(state / "ray_token"))
    redis = None
    if gcs_ft:
        redis = gcs_redis.prepare(state, redis_port or gcs_redis.DEFAULT_PORT)
        try:  # before the node: a head restarted after a crash reads its state from it
            gcs_redis.start(redis)
        except (FileNotFoundError, TimeoutError) as exc:
            print(f"omnigent ray-start: {exc}", file=sys.stderr)
            return 1
        env.update(redis.ray_env())
    address = cli_arg(ray_args, "--address")
    running = our_raylet()
    if running is not None:
        if head or _same_cluster(running, address, env):
            print(f"this machine's Ray node is already running (pid {running['pid']})", flush=True)
            return 0
        print("stopping this machine's node of a cluster that is gone", flush=True)
        stop_processes(descendants([running["pid"], *marked_processes(running["mark"])]))
    mark = secrets.token_hex(8)
    env[MARK_ENV] = mark
    argv = [ray_bin(), "start", *ray_args, "--disable-usage-stats"]
    if node_ip and cli_arg(ray_args, "--node-ip-address") is None:
        argv.append(f"--node-ip-address={node_ip}")
    node: dict[str, object] = {"mark": mark, "node_ip": node_ip, "head": head, "address": address}
    if redis is not None:
        node["gcs_redis"] = {"dir": str(redis.dir), "port": redis.port}
    write_private(state / NODE_FILE, json.dumps(node) + "\n")
    return subprocess.run(argv, env=env).returncode


def ray_stop() -> int:
    """Stop the server (on the head) and then this machine's omnigent-started node."""
    state = state_dir()
    try:
        node = json.loads((state / NODE_FILE).read_text())
    except (OSError, ValueError):
        print("no Ray node started by omnigent on this machine", flush=True)
        return 0
    if node.get("head"):
        try:  # a separate process: its Ray driver must not outlive the stop
            subprocess.run([sys.executable, "-m", "omnigent.cli", "stop", "--nodes"], timeout=90)
        except subprocess.TimeoutExpired:
            print("the server did not stop in time; stopping the node anyway", flush=True)
    pids = [p for p in descendants(marked_processes(node["mark"])) if p != os.getpid()]
    stop_processes(pids)
    print(f"stopped {len(pids)} Ray processes started by omnigent", flush=True)
    if node.get("gcs_redis"):
        redis = gcs_redis.GcsRedis(Path(node["gcs_redis"]["dir"]), node["gcs_redis"]["port"])
        gcs_redis.stop(redis, drop_data=True)  # a cluster stopped on purpose is not resumed
        print("stopped the GCS Redis", flush=True)
    return 0


def _same_cluster(raylet: dict, address: str | None, env: dict) -> bool:
    """Is our running raylet a node of the cluster whose GCS is at `address` now?"""
    if not address or raylet["gcs"] != address:
        return False
    code = (
        "import sys\nfrom ray._raylet import GcsClient\n"
        "c = GcsClient(address=sys.argv[1])\n"
        "print(c.internal_kv_get(b'session_name', b'session', timeout=5).decode())\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, address],
            env=env,
            timeout=20,
            capture_output=True,
            text=True,
        )
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and out.stdout.strip() == raylet["session"]
