"""The processes of this machine's omnigent-started Ray node, found through /proc: the
raylet and GCS carry a marker in their environment (`omnigent ray-start` sets it), the
rest are their descendants. Used by `omnigent ray-stop` (omnigent/raynode.py) and by the
HostActor (is this node ours to stop?)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from omnigent.config import state_dir

MARK_ENV = "OMNIGENT_RAY_NODE"
NODE_FILE = "ray-node.json"


def started_by_omnigent() -> bool:
    """Is this machine's Ray node (the one this process runs on) one ray-start started?"""
    return our_raylet() is not None


def stop_processes(pids: list[int], grace: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.1)


def cli_arg(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return None


def proc_ids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def environ_of(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return b""


def marked_processes(mark: str) -> list[int]:
    """Processes started with our marker whose environment is still readable (the raylet
    and GCS: Ray's Python processes rename themselves, which overwrites theirs)."""
    needle = f"{MARK_ENV}={mark}".encode()
    return [p for p in proc_ids() if needle in environ_of(p).split(b"\0")]


def cmdline_of(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def our_raylet() -> dict | None:
    try:
        node = json.loads((state_dir() / NODE_FILE).read_text())
    except (OSError, ValueError):
        return None
    for pid in marked_processes(node["mark"]):
        argv = cmdline_of(pid)
        if argv and argv[0].endswith("/raylet") and alive(pid):
            return {
                "pid": pid,
                "mark": node["mark"],
                "session": cli_arg(argv, "--session-name"),
                "gcs": cli_arg(argv, "--gcs-address"),
            }
    return None


def children_of() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid in proc_ids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(pid)
    return kids


def descendants(roots: list[int]) -> list[int]:
    kids = children_of()
    found: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo.extend(kids.get(pid, []))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def ray_bin() -> str:
    """The real `ray` beside this interpreter (the one on PATH may be the `ray stop` shim)."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")
