"""The runner's direct data path: the app its KeyedServer (actors/dataserver.py) serves
from the RunnerActor's own process on the host.

The API forwards `/v1/sessions/{sid}/resources/...` here as `/resources/...`, body and
query untouched, and passes the answer back as it is; this app validates the request
against the routes of actors/runner_api.py and renders the contract's error body itself.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from fastapi import FastAPI

from actors import runner_api
from omnigent import wire
from omnigent.errors import InvalidPath, RunnerUnavailable
from omnigent.http_errors import install_error_handlers
from omnigent.warmup import warm_up


def runner_app(runner: runner_api.RunnerResources):
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.state.runner = runner
    app.include_router(runner_api.router)
    warm_up(app)
    return _Guard(app, runner)


class _Guard:
    """Before the app: a stopped runner (or a pooled one, not yet given a session) answers
    nothing but 503 with the gone header (the API then looks the session up again), and
    a path whose percent-escapes are not UTF-8 is refused (Starlette would decode it to
    U+FFFD and name a file that nobody asked for). Plain ASGI: no per-request cost worth
    measuring."""

    def __init__(self, app, runner: runner_api.RunnerResources) -> None:
        self.app = app
        self.runner = runner

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            if self.runner.stopped or not self.runner.assigned:
                await wire.send_error(
                    send,
                    RunnerUnavailable("the runner has stopped"),
                    [(wire.GONE_HEADER.encode(), b"1")],
                )
                return
            raw = scope.get("raw_path")
            if raw and b"%" in raw:
                try:
                    unquote_to_bytes(raw).decode("utf-8")
                except UnicodeDecodeError:
                    await wire.send_error(send, InvalidPath("the path is not valid UTF-8"))
                    return
        await self.app(scope, receive, send)
