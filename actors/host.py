"""HostActor: one per enrolled node, pinned to it, so that browsing the host's files and
launching runners run on that machine, never on the head.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time

import ray

from actors import options
from actors.host_data import host_data_server
from actors.runner_pool import RunnerPool
from omnigent import hostfs, worktrees
from omnigent.domain.host_paths import expand_home, normalize_host_path
from omnigent.env.baseline import remove_session_baseline, stored_sessions
from omnigent.errors import InvalidWorkspace, LaunchFailed, OmnigentError, UpstreamTimeout
from omnigent.ids import new_id
from omnigent.machine import describe_machine

# Fault injection for tests: a failure after the worktree exists, or a host that dies
# in the middle of a launch, cannot be produced at will on a healthy machine, so a node
# started with this variable set fails that step ("1"), or first waits ("delay:SECONDS").
# It is that node's environment, not a server setting; read only in `launch_runner`.
FAULT_ENV = "OMNIGENT_FAULT_RUNNER_START"
# Baselines of deleted sessions left on this machine are looked for this often (and
# when the host is adopted); a deleted session's host is told at once when online.
BASELINE_SWEEP_S = 600.0
log = logging.getLogger(__name__)


class HostActor:
    """Made on every node that joins; it first tells who the machine is (`ready`), and
    becomes a host's actor once the ControlActor enrolls the node (`adopt`)."""

    def __init__(
        self, namespace: str, version: str = "", pool_low: int = 0, pool_high: int = 0
    ) -> None:
        """`pool_low`, `pool_high`: runners kept started ahead of launches on this host
        (Settings.runner_pool_low / _high; see actors/runner_pool.py)."""
        self.about = describe_machine()
        self.host_id: str | None = None
        self.owner: str | None = None
        self.version = version
        self.home = self.about["home"]
        self.namespace = namespace
        self.node_id = ray.get_runtime_context().get_node_id()
        self.instance = ray.get_runtime_context().get_actor_id()
        self._aborted: set[str] = set()
        self._reserved: dict[str, object] = {}  # runner id -> pooled runner taken for a launch
        self._lock = threading.Lock()
        self.pool = RunnerPool(self._start_runner, pool_low, pool_high)
        self._pool_kept = False
        self._data_key = secrets.token_urlsafe(32)
        self._data = host_data_server(
            ray.util.get_node_ip_address(), self._data_key, lambda: self.home
        )
        self._data.start()
        self._remove_stale_runner_state()

    def _remove_stale_runner_state(self) -> None:
        """Baselines left on this machine by runners that died without stopping."""
        from actors.runner import runner_state_dir

        parent = runner_state_dir(self.namespace)
        try:
            names = os.listdir(parent)
        except OSError:
            return
        for name in names:
            try:
                ray.get_actor(name, namespace=self.namespace)
            except ValueError:
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)

    def ready(self) -> dict:
        return {
            "node_id": self.node_id,
            "pid": os.getpid(),
            "home": self.home,
            "version": self.version,
            "about": self.about,
        }

    def stop_node(self) -> bool:
        """Stop this machine's Ray node if `omnigent ray-start` started it (`ray down` of
        a `ray up` cluster: the launcher itself leaves worker nodes running). The stop
        runs in a process of its own, since it ends this actor too."""
        from omnigent.nodeprocs import started_by_omnigent

        if not started_by_omnigent():
            return False
        subprocess.Popen(
            [sys.executable, "-m", "omnigent.cli", "ray-stop"],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return True

    def adopt(self, host_id: str, owner: str) -> None:
        """The node was enrolled as this host (idempotent); its runner pool fills."""
        self.host_id, self.owner = host_id, owner
        with self._lock:
            if self._pool_kept:
                return
            self._pool_kept = True
        self.pool.fill()
        threading.Thread(target=self._keep_pool, name="runner-pool-trim", daemon=True).start()
        threading.Thread(target=self._sweep_baselines, name="baseline-sweep", daemon=True).start()

    def forget_baseline(self, session_id: str) -> bool:
        """The session was deleted: its change baseline on this machine goes (whether
        there was one). Its runner, if any, was stopped first."""
        try:
            return remove_session_baseline(self.namespace, session_id)
        except ValueError:  # not a session id: nothing of it is on disk
            return False

    def sweep_baselines(self) -> list[str]:
        """Remove the baselines of sessions that no longer exist (deleted while this host
        was offline, or whose last runner was on another host); the ones removed. Asks
        the ControlActor; nothing is removed if it cannot answer."""
        ids = stored_sessions(self.namespace)
        if not ids:
            return []
        try:
            control = ray.get_actor("control", namespace=self.namespace)
            gone = ray.get(control.sessions_missing.remote(ids), timeout=30)
        except Exception:  # noqa: BLE001 - no answer: keep everything until next time
            log.warning("baseline sweep skipped: the control plane did not answer")
            return []
        for session_id in gone:
            self.forget_baseline(session_id)
        return list(gone)

    def _sweep_baselines(self, every_s: float = BASELINE_SWEEP_S) -> None:
        while True:
            try:
                self.sweep_baselines()
            except Exception:  # a background pass logs and goes on
                log.exception("baseline sweep failed")
            threading.Event().wait(every_s)

    def _keep_pool(self, every_s: float = 10.0) -> None:
        while True:
            threading.Event().wait(every_s)
            self.pool.trim()
            self.pool.fill()

    def get_instance(self) -> str:
        """This actor's Ray id: a pooled runner exits once the node's HostActor is another."""
        return self.instance

    def _start_runner(self) -> tuple[str, object]:
        from actors.runner import RemoteRunner  # only where a runner is started

        runner_id = new_id("runner")
        handle = RemoteRunner.options(
            **options.runner_options(self.namespace, runner_id, self.node_id)
        ).remote(runner_id, self.instance)
        return runner_id, handle

    def reserve_runner(self) -> str:
        """The id of the runner a launch will use: a pooled one, taken out of the pool and
        kept for that launch (`launch_runner`, or `release_runner` if its binding lost), or
        a new id (the runner is then started by `launch_runner`)."""
        taken = self.pool.take()
        if taken is None:
            return new_id("runner")
        runner_id, handle = taken
        with self._lock:
            self._reserved[runner_id] = handle
        return runner_id

    def release_runner(self, runner_id: str) -> None:
        with self._lock:
            handle = self._reserved.pop(runner_id, None)
        if handle is not None:
            self.pool.put_back(runner_id, handle)

    def data_path(self) -> dict:
        """Where and how the API reaches this host's direct data path."""
        return {"url": self._data.url, "key": self._data_key}

    def list_directory(
        self, path: str | None, limit: int, after: str | None, before: str | None
    ) -> bytes:
        """The page as JSON bytes: encoded once, here, and passed through by the API
        (shipping a list of dicts through Ray and re-encoding it costs ~1.5 ms)."""
        page = hostfs.list_directory(path, self.home, limit=limit, after=after, before=before)
        return json.dumps(page, ensure_ascii=False, separators=(",", ":")).encode()

    def launch_runner(
        self,
        runner_id: str,
        session_id: str,
        workspace: str,
        git: dict | None,
        binding_token: str,
        runner_settings: dict | None = None,
    ) -> dict:
        """Start a RunnerActor on this node; on any failure undo everything and raise.
        `runner_settings`: the server's Settings.runner_settings()."""
        tree = None
        runner = None
        try:
            cwd = self._resolve_workspace(workspace)
            if git and git.get("existing_worktree"):
                tree = worktrees.bind_existing(cwd)
            elif git:
                tree = worktrees.create(cwd, git["branch_name"], git.get("base_branch"))
            fault = os.environ.get(FAULT_ENV, "")
            if fault.startswith("delay:"):
                time.sleep(float(fault[6:]))
            elif fault:
                raise LaunchFailed("runner failed to start (fault injected by " + FAULT_ENV + ")")
            with self._lock:
                runner = self._reserved.pop(runner_id, None)
            if runner is None:  # none was pooled: start one now (~1 s)
                from actors.runner import RemoteRunner  # only where a runner is started

                runner = RemoteRunner.options(
                    **options.runner_options(self.namespace, runner_id, self.node_id)
                ).remote(runner_id)
            try:
                info = ray.get(
                    runner.assign.remote(  # type: ignore[attr-defined]
                        session_id,
                        self.host_id,
                        tree.path if tree else cwd,
                        binding_token,
                        **(runner_settings or {}),
                    ),
                    timeout=30,
                )
            except ray.exceptions.GetTimeoutError:
                raise UpstreamTimeout("the runner did not start in time") from None
            except ray.exceptions.RayError as exc:
                raise LaunchFailed(f"the runner failed to start: {exc}") from None
            with self._lock:
                if runner_id in self._aborted:
                    raise LaunchFailed("the launch was cancelled")
        except BaseException:
            if runner is not None:
                ray.kill(runner)
            else:
                self.release_runner(runner_id)  # not used: back to the pool
            if tree is not None:
                worktrees.rollback(tree)
            raise
        info["git_branch"] = tree.branch if tree else None
        info["workspace"] = tree.path if tree else cwd
        return info

    def abort_launch(self, runner_id: str) -> None:
        """The server gave up on this launch: make sure no runner is left behind."""
        with self._lock:
            self._aborted.add(runner_id)
        try:
            ray.kill(ray.get_actor(runner_id, namespace=self.namespace))
        except ValueError:
            pass

    def _resolve_workspace(self, workspace: str) -> str:
        if not workspace.startswith(("/", "~")):
            raise InvalidWorkspace("workspace must be an absolute path")
        try:
            path = expand_home(normalize_host_path(workspace), self.home)
        except OmnigentError as exc:
            raise InvalidWorkspace(f"invalid workspace: {exc.message}") from None
        if not os.path.isdir(path):
            raise InvalidWorkspace(f"workspace is not a directory on the host: {path}")
        return os.path.realpath(path)


RemoteHost = ray.remote(HostActor)
