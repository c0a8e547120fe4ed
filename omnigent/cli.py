"""The `omnigent` command: `serve`, `host`, `token create`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from omnigent.config import DEFAULT_PORT, Settings, state_dir


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    parser = argparse.ArgumentParser(prog="omnigent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the server (and a local Ray cluster)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--address", help="attach to this running Ray cluster instead")
    p.add_argument("--host", default="127.0.0.1", help="address the API listens on")
    p.add_argument("--node-ip-address", help="this node's IP address in the Ray cluster")

    p = sub.add_parser("host", help="register this machine as a host (foreground)")
    p.add_argument("server_url")
    p.add_argument("--token", help="bearer token (default: ~/.omnigent/token)")
    p.add_argument("--node-ip-address", help="this machine's Ray node IP (default: detected)")
    p.add_argument("--no-join", action="store_true",
                   help="do not run `ray start` when this machine is not yet a node")

    p = sub.add_parser("token", help="manage bearer tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("create", help="print a new token for USER")
    t.add_argument("user")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "serve":
        from omnigent.server import serve_forever

        return serve_forever(args.port, args.address, args.host, args.node_ip_address)
    if args.command == "host":
        return run_host(args)
    return create_token(args.user)


def create_token(user: str) -> int:
    """Writes to the store directly: works whether or not the server is running."""
    from omnigent.ids import new_token
    from omnigent.store import Store

    if not user or not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
        print("user names are letters, digits, '-', '_' and '.'", file=sys.stderr)
        return 2
    settings = Settings(state_dir=str(state_dir()))
    store = Store(settings.db_path)
    token = new_token()
    store.add_token(user, token)
    store.close()
    print(token)
    return 0


def run_host(args: argparse.Namespace) -> int:
    from omnigent.daemon import HostDaemon, RegistrationRefused, default_node_ip

    token = args.token
    if token is None:
        path = Path(state_dir()) / "token"
        if not path.exists():
            print("no --token given and no ~/.omnigent/token", file=sys.stderr)
            return 2
        token = path.read_text().strip()
    daemon = HostDaemon(args.server_url, token, args.node_ip_address or default_node_ip(),
                        join=not args.no_join)
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, daemon.stop)
    try:
        loop.run_until_complete(daemon.run())
    except RegistrationRefused as exc:
        print(f"registration refused: {exc.code}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
