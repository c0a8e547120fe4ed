"""SessionActor: one per *active* session; launches and stops the session's runner.

Its state is in the store (through the ControlActor), so it can be let go at any time:
the ControlActor creates it on use and kills it when it has been idle for a while.
"""

from __future__ import annotations

import secrets

import ray

from actors.calls import call, get_named
from omnigent.config import Settings
from omnigent.errors import HostOffline, UpstreamTimeout
from omnigent.ids import new_id


class SessionActor:
    def __init__(self, session_id: str, settings: dict) -> None:
        self.session_id = session_id
        self.settings = Settings(**settings)
        self.control = ray.get_actor("control", namespace=self.settings.namespace)

    async def launch(self, host_id: str, node_id: str, workspace: str, git: dict | None) -> dict:
        """Bind a new runner (compare-and-set), have the host start it, and wait for its
        acknowledgement. Any failure rolls the binding back before it is re-raised."""
        runner_id = new_id("runner")
        binding_token = secrets.token_urlsafe(24)
        await self.control.bind_runner.remote(
            self.session_id,
            runner_id,
            binding_token,
            {
                "host_id": host_id,
                "workspace": workspace,
                "git_branch": (git or {}).get("branch_name"),
            },
        )
        ns = self.settings.namespace
        host = get_named(f"node_{node_id}", ns)  # the HostActor of the host's node
        try:
            if host is None:
                raise HostOffline("the host is offline")
            info = await call(
                host.launch_runner.remote(
                    runner_id,
                    self.session_id,
                    workspace,
                    git,
                    binding_token,
                    self.settings.runner_settings(),
                ),
                timeout=self.settings.launch_timeout_s,
                unreachable=lambda: HostOffline("the host went offline during the launch"),
                timeout_error=lambda: UpstreamTimeout("the host did not start the runner in time"),
            )
        except BaseException as exc:
            if host is not None and isinstance(exc, (UpstreamTimeout, HostOffline)):
                host.abort_launch.remote(runner_id)  # it may still be starting one: stop it
            await self.control.unbind_runner.remote(self.session_id, runner_id)
            raise
        await self.control.runner_started.remote(self.session_id, info)
        return {"runner_id": runner_id, "status": "launching"}

    async def stop_runner(self, runner_id: str) -> None:
        runner = get_named(runner_id, self.settings.namespace)
        if runner is None:
            return
        try:
            await call(
                runner.stop.remote(),
                timeout=self.settings.host_call_timeout_s,
                unreachable=lambda: HostOffline("runner unreachable"),
            )
        except Exception:  # noqa: BLE001 - whatever failed, the runner must go
            ray.kill(runner)  # unreachable or stuck: make sure it is gone


RemoteSession = ray.remote(SessionActor)
