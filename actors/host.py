"""HostActor: one per enrolled node, pinned to it, so that browsing the host's files and
launching runners run on that machine, never on the head.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading

import ray

from actors import options
from actors.host_data import host_data_server
from omnigent import hostfs, worktrees
from omnigent.domain.host_paths import expand_home, normalize_host_path
from omnigent.errors import InvalidWorkspace, LaunchFailed, OmnigentError, UpstreamTimeout
from omnigent.machine import describe_machine

# Fault injection for tests: a failure after the worktree exists cannot be produced for
# real on a healthy machine, so a node started with this variable set fails that step.
# It is that node's environment, not a server setting; read only in `launch_runner`.
FAULT_ENV = "OMNIGENT_FAULT_RUNNER_START"


class HostActor:
    """Made on every node that joins; it first tells who the machine is (`ready`), and
    becomes a host's actor once the ControlActor enrolls the node (`adopt`)."""

    def __init__(self, namespace: str, version: str = "") -> None:
        self.about = describe_machine()
        self.host_id: str | None = None
        self.owner: str | None = None
        self.version = version
        self.home = self.about["home"]
        self.namespace = namespace
        self.node_id = ray.get_runtime_context().get_node_id()
        self._aborted: set[str] = set()
        self._lock = threading.Lock()
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
        """The node was enrolled as this host (idempotent)."""
        self.host_id, self.owner = host_id, owner

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
        cwd = self._resolve_workspace(workspace)
        tree = None
        runner = None
        try:
            if git and git.get("existing_worktree"):
                tree = worktrees.bind_existing(cwd)
            elif git:
                tree = worktrees.create(cwd, git["branch_name"], git.get("base_branch"))
            if os.environ.get(FAULT_ENV):
                raise LaunchFailed("runner failed to start (fault injected by " + FAULT_ENV + ")")
            from actors.runner import RemoteRunner  # only where a runner is started

            runner = RemoteRunner.options(
                **options.runner_options(self.namespace, runner_id, self.node_id)
            ).remote(
                runner_id,
                session_id,
                self.host_id,
                tree.path if tree else cwd,
                binding_token,
                **(runner_settings or {}),
            )
            try:
                info = ray.get(runner.hello.remote(), timeout=30)
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
