"""SessionActor: one per *active* session: it makes sure the session's runner is gone
when the session is deleted and the runner did not stop when the ControlActor asked it.

Launches and ordinary stops do not go through it (the ControlActor binds and asks the
host directly: a launch then takes milliseconds, not the ~1 s of starting this actor's
process). Its
state is in the store (through the ControlActor), so it can be let go at any time: the
ControlActor creates it on use and kills it once it has been idle for
`session_idle_s`.
"""

from __future__ import annotations

import ray

from actors.calls import call, get_named
from omnigent.config import Settings
from omnigent.errors import HostOffline


class SessionActor:
    def __init__(self, session_id: str, settings: dict) -> None:
        self.session_id = session_id
        self.settings = Settings(**settings)

    async def stop_runner(self, runner_id: str, ask: bool = True) -> None:
        """Stop the runner (`ask`: ask it first, then kill it if that fails)."""
        runner = get_named(runner_id, self.settings.namespace)
        if runner is None:
            return
        if not ask:
            ray.kill(runner)
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
