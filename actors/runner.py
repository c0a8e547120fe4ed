"""RunnerActor: one per runner, pinned to its host's node, working in the workspace.

It owns the session's environment: the workspace root (the worktree, if any), the
change tracker (its baseline is the session's, kept on the host beyond the runner's
life), and the direct data path that serves the session's
resources (actors/runner_data.py). The ControlActor keeps one `wait_exit` call pending per
live runner; it returns "runner_exited" after `stop()`, and raises if the actor dies
(crash, killed node), which the ControlActor records as "runner_failed".
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import hashlib
import os
import secrets
import sys
import threading
import time

import ray

from actors.calls import unwrap
from actors.dataserver import KeyedServer
from actors.runner_data import runner_app
from omnigent.env import reaper
from omnigent.env.baseline import session_baseline_dir
from omnigent.env.changes import ChangeTracker
from omnigent.env.terminals import MAX_TERMINALS, Terminals
from omnigent.errors import LaunchFailed
from omnigent.machine import owner_environment


def runner_state_dir(namespace: str, runner_id: str = "") -> str:
    """Where a runner keeps its own state on the host (the change watcher's barrier,
    fetched files; removed when it stops); without a runner id, the directory holding
    those of one server (Ray namespace). The session's change baseline is not there: it
    outlives the runner (omnigent.env.baseline)."""
    return os.path.join(os.path.expanduser("~/.omnigent/runners"), namespace, runner_id)


class RunnerActor:
    """Started ahead of need by its host (a pooled runner: the process is up and its data
    path listens, but it has no session), then given one by `assign`. A runner is given
    exactly one session in its life."""

    tracker: ChangeTracker  # made by `assign`

    def __init__(self, runner_id: str, host_instance: str = "") -> None:
        """`host_instance`: the Ray actor id of the HostActor that started it; a runner not
        yet given a session exits when that actor is gone (replaced by an upgrade, or
        dead), so that no pooled runner outlives its pool."""
        # The data path's thread shares the GIL with Ray's threads in this process; a
        # shorter switch interval keeps a keystroke from waiting up to 5 ms for it.
        sys.setswitchinterval(0.0005)
        self.runner_id = runner_id
        self.session_id = ""
        self.host_id = ""
        self.root = ""
        self._binding_token = ""
        self.max_terminals = MAX_TERMINALS
        self.assigned = False
        self._assigning = threading.Lock()
        self.started_at = 0
        self.stopped = False
        self._stopped = asyncio.Event()
        self._terminals: Terminals | None = None  # made on the data path's loop
        self._declared: dict | None = None
        self.child_env: dict[str, str] = {}
        # Orphans of the shells and terminals are re-parented to us, and reaped here, not
        # left as zombies where PID 1 does not reap (omnigent.env.reaper).
        self.reaping = reaper.start()
        self._data = KeyedServer(
            ray.util.get_node_ip_address(),
            secrets.token_urlsafe(32),
            runner_app(self),
            name="runner-data",
        )
        self._data.start()
        self._loop: asyncio.AbstractEventLoop | None = None
        if host_instance:
            threading.Thread(
                target=self._exit_with_host, args=(host_instance,), daemon=True
            ).start()
        _release_memory()

    async def ready(self) -> int:
        """A pooled runner answers this once it can be assigned (its pid)."""
        self._loop = asyncio.get_running_loop()
        return os.getpid()

    def _exit_with_host(self, host_instance: str, every_s: float = 2.0) -> None:
        namespace = ray.get_runtime_context().namespace
        name = f"node_{ray.get_runtime_context().get_node_id()}"
        while not self.assigned:
            time.sleep(every_s)
            try:
                host = ray.get_actor(name, namespace=namespace)
                alive = ray.get(host.get_instance.remote(), timeout=10) == host_instance
            except Exception:  # noqa: BLE001 - gone, replaced or broken: the pool is gone
                alive = False
            if not alive and self._loop is not None:
                with self._assigning:
                    if self.assigned:
                        return
                    self.stopped = True  # never assigned now
                self._loop.call_soon_threadsafe(_exit)
                return

    def assign(
        self,
        session_id: str,
        host_id: str,
        cwd: str,
        binding_token: str,
        max_terminals: int = MAX_TERMINALS,
        reconcile_s: float = 30.0,
    ) -> dict:
        """Become the session's runner in `cwd`; the acknowledgement (see `hello`).
        `max_terminals`, `reconcile_s`: the server's settings (Settings.runner_settings).
        The change tracker's baseline is done with its walk when this returns; the bytes
        of the files are kept in the background (see ChangeTracker.start). The baseline is
        the session's, kept on this host (omnigent.env.baseline): a runner of a session
        that had one here, in the same root, takes it up and reads no bytes."""
        with self._assigning:
            if self.assigned or self.stopped:
                raise LaunchFailed("this runner was already given a session, or has stopped")
            self.assigned = True
        os.chdir(cwd)
        self.session_id = session_id
        self.host_id = host_id
        self.root = os.path.realpath(cwd)
        self._binding_token = binding_token
        self.max_terminals = max_terminals
        # Programs run for the session (shells, terminals) get the machine owner's
        # environment, not this Ray worker's (see omnigent.machine.owner_environment).
        self.child_env = owner_environment()
        self.started_at = int(time.time())
        namespace = ray.get_runtime_context().namespace
        try:  # kept with the session: a later runner of it in this root takes it up
            baseline_dir: str | None = session_baseline_dir(namespace, session_id)
        except ValueError:
            baseline_dir = None
        self.tracker = ChangeTracker(
            self.root,
            runner_state_dir(namespace, self.runner_id),
            reconcile_s=reconcile_s,
            baseline_dir=baseline_dir,
        )
        self.tracker.start(wait=False)
        return self._hello()

    def _hello(self) -> dict:
        """The acknowledgement the host waits for: who I am, my binding token, and where
        my data path is."""
        data_path = {"url": self._data.url, "key": self._data.key}
        return {**self._info(), "binding_token": self._binding_token, "data_path": data_path}

    async def info(self) -> dict:
        return self._info()

    def _info(self) -> dict:
        return {
            "runner_id": self.runner_id,
            "session_id": self.session_id,
            "host_id": self.host_id,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "started_at": self.started_at,
        }

    async def data_path(self) -> dict:
        """Where and how the API reaches this runner's resources."""
        return {"url": self._data.url, "key": self._data.key}

    # resources (read by the data path's thread: plain data only) -------------------
    def environment(self) -> dict:
        return {
            "id": "default",
            "object": "session.resource",
            "type": "environment",
            "session_id": self.session_id,
            "name": "default",
            "metadata": {"root": self.root, "host_id": self.host_id, "runner_id": self.runner_id},
        }

    def resources(self) -> list[dict]:
        found = [self.environment()]
        if self._terminals is not None:
            found += self._terminals.list()
        return found

    async def terminals(self) -> Terminals:
        """The session's terminals (made on first use, on the data path's event loop)."""
        if self._terminals is None:
            declared = await asyncio.to_thread(self.declared_terminals)
            if self._terminals is None:
                self._terminals = Terminals(
                    self.root,
                    self.session_id,
                    declared,
                    max_terminals=self.max_terminals,
                    env=self.child_env,
                )
        return self._terminals

    def declared_terminals(self) -> dict:
        """The agent spec's terminals (asked once; blocking, from a worker thread)."""
        if self._declared is None:
            control = ray.get_actor("control", namespace=ray.get_runtime_context().namespace)
            self._declared = ray.get(control.session_terminals.remote(self.session_id), timeout=10)
        return self._declared

    # files -----------------------------------------------------------------------------
    def fetch_file(self, file_id: str) -> dict:
        """Bring one of the session's uploaded files to this host (streamed from the
        server in chunks, checked against its sha256); where it is, for the agent to read.
        Blocking: called from the data path's worker threads."""
        control = ray.get_actor("control", namespace=ray.get_runtime_context().namespace)
        target = os.path.join(self.tracker.state_dir, "files", file_id)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = f"{target}.{secrets.token_hex(4)}.part"
        digest, size = hashlib.sha256(), 0
        try:
            with open(partial, "wb") as out:
                chunks = control.file_chunks.options(_generator_backpressure_num_objects=4).remote(
                    self.session_id, file_id
                )
                for ref in chunks:
                    data = ray.get(ref, timeout=60)
                    digest.update(data)
                    size += len(data)
                    out.write(data)
            os.replace(partial, target)
        except BaseException as exc:  # noqa: BLE001 - any failure: clean up, then re-raised
            if os.path.exists(partial):
                os.unlink(partial)
            raise unwrap(exc) from None  # the server's NotFound comes back wrapped by Ray
        return {"file_id": file_id, "path": target, "bytes": size, "sha256": digest.hexdigest()}

    # lifecycle -------------------------------------------------------------------------
    async def wait_exit(self) -> str:
        await self._stopped.wait()
        return "runner_exited"

    async def stop(self) -> None:
        """Stop the runner (idempotent): refuse new requests, report the exit, leave."""
        if self._stopped.is_set():
            return
        self.stopped = True
        self._stopped.set()
        tracker = getattr(self, "tracker", None)  # none before `assign`
        if tracker is not None:
            tracker.close()
        if self._terminals is not None and self._data.loop is not None:
            self._data.loop.call_soon_threadsafe(self._terminals.close_all)
        asyncio.get_running_loop().call_later(0.5, _exit)


def _exit() -> None:
    ray.actor.exit_actor()


def _release_memory() -> None:
    """Hand the heap that start-up freed back to the system (a pooled runner waits,
    perhaps for long: it should cost no more than it must)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


RemoteRunner = ray.remote(RunnerActor)
