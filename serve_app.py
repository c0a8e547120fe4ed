"""The Ray Serve deployment that exposes the API.

The replica serves the FastAPI app on the server's port itself (uvicorn on the replica's
own event loop), the same idea as Serve's experimental direct ingress but on a fixed port:
a request reaches the app without the default proxy's extra hop (~7 ms here, see
bench/). Serve still deploys, health-checks and restarts the replica; the app is also the
deployment's Serve ingress, so it answers through a Serve proxy where one is enabled.

Several replicas share the port (SO_REUSEPORT: the kernel spreads connections over them);
they keep nothing a client's next request, on another replica, would miss (see
omnigent/control/watch.py). `omnigent serve` deploys it; `build` is the entry point of a
Serve config file (`serve run` / `serve deploy`, serve_config.yaml), the shape KubeRay's
RayService uses.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import ray
import uvicorn
from ray import serve

from actors import options
from actors.calls import get_named
from actors.control import RemoteControl
from omnigent.api.app import create_app
from omnigent.api.deps import AppState
from omnigent.config import Settings

app = create_app()
log = logging.getLogger(__name__)


@serve.deployment(num_replicas=1, max_ongoing_requests=10_000, health_check_period_s=2)
@serve.ingress(app)
class OmnigentIngress:
    # Ray Serve awaits an async constructor; mypy knows only plain classes
    async def __init__(self, settings: dict, start_control: bool = False) -> None:  # type: ignore[misc]
        self.settings = Settings(**settings)
        if start_control:
            await _ensure_control(self.settings)
        replica = serve.get_replica_context().replica_id.unique_id
        app.state.omnigent = AppState(self.settings, replica=f"api-{replica}")
        await app.state.omnigent.start()
        config = uvicorn.Config(
            app,
            host=self.settings.host,
            port=self.settings.port,
            log_level="warning",
            lifespan="off",
            ws_ping_interval=20,
            ws_ping_timeout=20,
            timeout_keep_alive=75,
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._socket = _reusable_listener(self.settings.host, self.settings.port)
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._socket])
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start (port in use…)
                raise RuntimeError(f"cannot serve on port {self.settings.port}")
            await asyncio.sleep(0.02)

    def check_health(self) -> None:
        if self._task.done():
            raise RuntimeError("the API server stopped")

    async def __del__(self) -> None:
        self._server.should_exit = True


def _reusable_listener(host: str, port: int) -> socket.socket:
    """The API's listening socket, with SO_REUSEPORT: while Serve rolls the deployment
    forward, the new replica listens beside the old one on the same port instead of
    failing to bind until the old one is gone."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _ensure_control(settings: Settings) -> None:
    """The ControlActor, started on this (the head) node if no one has (a deployment
    from a Serve config file, where no `omnigent serve` did)."""
    from omnigent.server import prepare_state

    handle = get_named("control", settings.namespace)
    if handle is None:
        prepare_state(settings)
        node_id = ray.get_runtime_context().get_node_id()
        handle = RemoteControl.options(
            **options.control_options(settings.namespace, node_id), get_if_exists=True
        ).remote(settings.to_dict())
    await handle.start.remote()


def build(args: dict) -> serve.Application:
    """The application of a Serve config file (`import_path: serve_app:build`): `args`
    are settings (`port`, `host`, `api_replicas`…), over `OMNIGENT_*` and the defaults."""
    settings = Settings.from_env(**args)
    return OmnigentIngress.options(  # type: ignore[attr-defined]
        num_replicas=settings.replicas_here(), ray_actor_options=options.api_options()
    ).bind(settings.to_dict(), True)
