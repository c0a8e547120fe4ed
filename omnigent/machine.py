"""What a machine says about itself when its Ray node is enrolled (runs on the host).

`describe_machine` runs in a probe actor on a newly joined node; a worker process there
inherits the environment of that node's raylet, i.e. of whoever ran `ray start` on the
machine, so `HOME` and the join key come from the machine's owner.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys

from omnigent.config import state_dir
from omnigent.domain.enrollment import HOST_NAME_ENV, JOIN_ENV

# Variables of Ray's and ours that must not reach the programs a host runs for a session
# (shell commands, terminals): the cluster token would let an agent's command join or
# drive the cluster.
PRIVATE_ENV_PREFIXES = ("RAY_", "OMNIGENT_")


def machine_id(home: str | None = None) -> str:
    """This machine's stable identity: made once, kept under the state dir."""
    path = state_dir(home) / "machine_id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".machine_id.{os.getpid()}.tmp")
        tmp.write_text(secrets.token_hex(16))
        try:
            os.link(tmp, path)  # atomic and never replaces: two probes at once agree
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_text().strip()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def describe_machine() -> dict:
    # The node's own environment (its owner's `ray start`), not the server's settings:
    # the join key and the host's name are read here and nowhere else.
    home = os.path.expanduser("~")
    return {
        "machine_id": machine_id(home),
        "join_key": os.environ.get(JOIN_ENV),
        "name": os.environ.get(HOST_NAME_ENV) or socket.gethostname(),
        "platform": sys.platform,
        "home": home,
        "cpus": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "pid": os.getpid(),
    }


def owner_environment() -> dict[str, str]:
    """The environment a host's programs run with: that of the node's raylet (the
    machine owner's at `ray start`, before Ray's workers added their own variables),
    without Ray's and our private variables."""
    env = _environ_of(os.getppid()) or dict(os.environ)
    return {k: v for k, v in env.items() if not k.startswith(PRIVATE_ENV_PREFIXES)}


def _environ_of(pid: int) -> dict[str, str] | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    env = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
    return env if "HOME" in env else None
