"""The Ray Serve deployment that exposes the API.

The replica serves the FastAPI app on the server's port itself (uvicorn on the replica's
own event loop), the same idea as Serve's experimental direct ingress but on a fixed port:
a request reaches the app without the default proxy's extra hop (~7 ms here, see
bench/). Serve still deploys, health-checks and restarts the replica; the app is also the
deployment's Serve ingress, so it answers through a Serve proxy where one is enabled.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn
from ray import serve

from omnigent.api.app import create_app
from omnigent.api.deps import AppState
from omnigent.config import Settings

app = create_app()
log = logging.getLogger(__name__)


@serve.deployment(num_replicas=1, max_ongoing_requests=10_000, health_check_period_s=2)
@serve.ingress(app)
class OmnigentIngress:
    # Ray Serve awaits an async constructor; mypy knows only plain classes
    async def __init__(self, settings: dict) -> None:  # type: ignore[misc]
        self.settings = Settings(**settings)
        app.state.omnigent = AppState(self.settings)
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
