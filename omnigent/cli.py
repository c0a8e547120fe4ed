"""The `omnigent` command: serve, stop, host, join-line, token, and the node commands
cluster.yaml uses (ray-start, ray-stop, cluster-setup)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from omnigent.config import Settings, describe_error, local_user, state_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnigent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the server (embedded Ray, or on a cluster)")
    p.add_argument("--port", type=int, help="the API's port (default: $OMNIGENT_PORT, else 6767)")
    p.add_argument("--address", help="deploy on this running Ray cluster (detached) instead")
    p.add_argument(
        "--host", help="address the API listens on (default: $OMNIGENT_HOST, else 127.0.0.1)"
    )
    p.add_argument("--node-ip-address", help="this node's IP address in the Ray cluster")

    p = sub.add_parser("stop", help="stop the server of this state dir")
    p.add_argument("--address", help="the Ray cluster it runs on (default: as recorded)")
    p.add_argument(
        "--nodes",
        action="store_true",
        help="also stop the hosts' Ray nodes that `omnigent ray-start` started",
    )

    p = sub.add_parser("host", help="join this machine as a host through the API (foreground)")
    p.add_argument("server_url")
    p.add_argument(
        "--token-file", help="bearer token file (default: $OMNIGENT_TOKEN, else ~/.omnigent/token)"
    )
    p.add_argument(
        "--ray-token-file",
        help="the cluster's Ray token (default: "
        "$RAY_AUTH_TOKEN / $RAY_AUTH_TOKEN_PATH, else ~/.omnigent/ray_token)",
    )
    p.add_argument("--node-ip-address", help="this machine's Ray node IP (default: detected)")

    p = sub.add_parser("join-line", help="print the line that joins a machine as USER's host")
    p.add_argument("user", nargs="?", help="default: the server's admin")

    p = sub.add_parser("token", help="manage bearer tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("create", help="print a new token for USER")
    t.add_argument("user")
    t = tsub.add_parser("list", help="list tokens (id, user, created), never the secrets")
    t.add_argument("--user", help="only USER's tokens")
    t = tsub.add_parser("revoke", help="revoke the token of this id (from `token list`)")
    t.add_argument("token_id")

    p = sub.add_parser("ray-start", help="start this machine's Ray node (for cluster.yaml)")
    p.add_argument("--shared-dir", help="directory the cluster config copies to every node")
    p.add_argument(
        "--worker-owner",
        action="append",
        default=[],
        metavar="IP=USER",
        help="on the head: the worker at IP becomes USER's host",
    )
    p.add_argument("--node-ip-address", help="default: the address SSH reached us at")
    p.add_argument(
        "--gcs-ft",
        action="store_true",
        help="on the head: keep Ray's GCS state in a Redis of its own, so a crashed head "
        "restarted within 60 s finds its workers, runners and terminals still running",
    )
    p.add_argument(
        "--redis-port",
        type=int,
        default=None,
        help="the GCS Redis's (loopback, TLS) port with --gcs-ft (default 6380)",
    )
    sub.add_parser("ray-stop", help="stop the Ray node `ray-start` started (and the server)")
    sub.add_parser("cluster-setup", help="install the `ray stop` shim for `ray down`")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args, rest = _parser().parse_known_args(argv)
    if rest and args.command != "ray-start":
        _parser().error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if args.command in ("serve", "stop", "token"):
        flags = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
        try:  # the one place the server's settings are read
            settings = Settings.from_env(**{k: v for k, v in flags.items() if v is not None})
        except ValidationError as exc:
            print(f"omnigent: {describe_error(exc)}", file=sys.stderr)
            return 2
    if args.command == "serve":
        from omnigent.server import serve

        return serve(settings, args.address, args.node_ip_address)
    if args.command == "stop":
        from omnigent.server import stop

        return stop(settings, args.address, stop_nodes=args.nodes)
    if args.command == "host":
        return run_host(args)
    if args.command == "join-line":
        return print_join_line(args.user)
    if args.command == "ray-start":
        from omnigent.raynode import ray_start

        owners = dict(o.split("=", 1) for o in args.worker_owner if "=" in o)
        return ray_start(
            [a for a in rest if a != "--"],
            shared=Path(os.path.expanduser(args.shared_dir)) if args.shared_dir else None,
            owners=owners,
            node_ip=args.node_ip_address,
            admin=local_user(),
            gcs_ft=args.gcs_ft,
            redis_port=args.redis_port,
        )
    if args.command == "ray-stop":
        from omnigent.raynode import ray_stop

        return ray_stop()
    if args.command == "cluster-setup":
        return cluster_setup()
    if args.token_command == "list":
        return list_tokens(settings, args.user)
    if args.token_command == "revoke":
        return revoke_token(settings, args.token_id)
    return create_token(settings, args.user)


def _valid_user(user: str) -> bool:
    return bool(user) and user.replace("-", "").replace("_", "").replace(".", "").isalnum()


def create_token(settings: Settings, user: str) -> int:
    """Writes to the store directly: works whether or not the server is running."""
    from omnigent.ids import new_token
    from omnigent.store import Store

    if not _valid_user(user):
        print("user names are letters, digits, '-', '_' and '.'", file=sys.stderr)
        return 2
    store = Store(settings.db_path)
    token = new_token()
    store.add_token(user, token)
    store.close()
    print(token)
    return 0


def list_tokens(settings: Settings, user: str | None) -> int:
    """Reads the store directly: works whether or not the server is running."""
    import datetime

    from omnigent.control.tokens import list_tokens as tokens_of
    from omnigent.store import Store

    store = Store(settings.db_path)
    try:
        tokens = tokens_of(store, user)
    finally:
        store.close()
    for t in tokens:
        created = datetime.datetime.fromtimestamp(t["created_at"], datetime.UTC)
        print(f"{t['id']}  {t['user']}  {created:%Y-%m-%d %H:%M:%S}Z")
    return 0


def revoke_token(settings: Settings, token_id: str) -> int:
    """Writes to the store directly, like `create`; a running server notices within half
    a second (its monitor follows the store's revocation counter) and its API replicas
    drop the tokens they have cached."""
    from omnigent.control.tokens import revoke_token as revoke
    from omnigent.errors import TokenNotFound
    from omnigent.store import Store

    store = Store(settings.db_path)
    try:
        gone = revoke(store, token_id)
    except TokenNotFound as exc:
        print(f"omnigent: {exc.message} (see `omnigent token list`)", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"revoked {gone['id']} ({gone['user']})")
    return 0


def print_join_line(user: str | None) -> int:
    """Works on the server's machine (it needs the server's secret and cluster token)."""
    import json

    from omnigent.credentials import server_secret
    from omnigent.domain.enrollment import join_key
    from omnigent.server import join_line

    user = user or local_user()
    if not _valid_user(user):
        print("user names are letters, digits, '-', '_' and '.'", file=sys.stderr)
        return 2
    state = state_dir()
    try:
        info = json.loads((state / "server.json").read_text())
        ray_token = (state / "ray_token").read_text().strip()
    except (OSError, ValueError):
        print("no server has run from this state dir (~/.omnigent)", file=sys.stderr)
        return 1
    print(join_line(info["ray_address"], join_key(server_secret(state), user), ray_token))
    return 0


def _read_secret(flag: str | None, env: str, default: Path) -> str | None:
    """For `omnigent host`: a credential of the host's user (`OMNIGENT_TOKEN` in its own
    environment, not a server setting; read only here)."""
    if flag:
        return Path(flag).read_text().strip()
    if os.environ.get(env):
        return os.environ[env].strip()
    return default.read_text().strip() if default.exists() else None


def run_host(args: argparse.Namespace) -> int:
    from omnigent.credentials import ray_auth_env, ray_auth_given
    from omnigent.daemon import HostDaemon, RegistrationRefused

    token = _read_secret(args.token_file, "OMNIGENT_TOKEN", state_dir() / "token")
    if not token:
        print("no bearer token: give --token-file or set OMNIGENT_TOKEN", file=sys.stderr)
        return 2
    if args.ray_token_file:
        ray_auth = ray_auth_env(os.path.abspath(args.ray_token_file))
    elif any(ray_auth_given()):
        ray_auth = {"RAY_AUTH_MODE": "token"}
    elif (state_dir() / "ray_token").exists():
        ray_auth = ray_auth_env(state_dir() / "ray_token")
    else:
        print(
            "no cluster token: give --ray-token-file or set RAY_AUTH_TOKEN (the admin's "
            "join line has it)",
            file=sys.stderr,
        )
        return 2
    daemon = HostDaemon(args.server_url, token, ray_auth, args.node_ip_address)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: daemon.stop())
    try:
        daemon.run()
    except RegistrationRefused as exc:
        print(f"registration refused: {exc.code}: {exc}", file=sys.stderr)
        return 1
    return 0


SHIM = """#!/bin/sh
# Installed by `omnigent cluster-setup`. `ray down` runs `ray stop` on every machine, which
# kills every Ray process there, the server's included, without a clean shutdown. This
# `ray` stops the server cleanly and then only the node omnigent started.
if [ "$1" = stop ]; then exec "{bin}/omnigent" ray-stop; fi
exec "{bin}/ray" "$@"
"""
PATH_LINE = 'export PATH="$HOME/.omnigent/bin:{bin}:$PATH"  # omnigent cluster-setup\n'


def cluster_setup() -> int:
    """Put the `ray stop` shim first on the PATH of login shells (ray up's and ray down's
    commands run in one)."""
    bin_dir = str(Path(sys.executable).parent)
    shim = state_dir() / "bin" / "ray"
    shim.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shim.write_text(SHIM.format(bin=bin_dir))
    shim.chmod(0o755)
    line = PATH_LINE.format(bin=bin_dir)
    for rc in (Path.home() / ".profile", Path.home() / ".bashrc"):
        text = rc.read_text() if rc.exists() else ""
        kept = [x for x in text.splitlines(keepends=True) if "# omnigent cluster-setup" not in x]
        rc.write_text(line + "".join(kept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
