"""Builds the FastAPI app. `serve_app.py` wraps it in the Serve deployment."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from omnigent import __version__
from omnigent.api.auth import AuthMiddleware
from omnigent.api.docs import install_openapi
from omnigent.api.methods import method_not_allowed
from omnigent.api.responses import Json
from omnigent.api.routes import files, hosts, resources, sessions, terminals, web
from omnigent.http_errors import install_error_handlers
from omnigent.models import ClusterInfo
from omnigent.models.common import error_responses
from omnigent.warmup import warm_up


def create_app() -> FastAPI:
    app = FastAPI(title="omnigent-on-ray", version=__version__)
    install_error_handlers(app)
    app.add_middleware(AuthMiddleware)
    app.include_router(hosts.router)
    app.include_router(sessions.router)
    app.include_router(files.router)  # before the catch-all of `resources`
    app.include_router(terminals.router)
    app.include_router(resources.router)
    app.include_router(web.router)  # `/` and `/ui/…`: the web UI's static files, no auth
    install_openapi(app)

    @app.exception_handler(405)
    async def _method_not_allowed(request: Request, exc: StarletteHTTPException):
        fallback = (getattr(exc, "headers", None) or {}).get("Allow")
        return method_not_allowed(request.app, request.scope["path"], fallback)

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> dict:
        """Up; and which API replica answered (they share the port)."""
        state = getattr(request.app.state, "omnigent", None)
        return {"ok": True, "replica": getattr(state, "replica", None)}

    @app.get(
        "/v1/cluster", response_model=ClusterInfo, tags=["cluster"], responses=error_responses(503)
    )
    async def cluster(request: Request):
        """What a machine needs to join this server's Ray cluster as the caller's host:
        the Ray address and the caller's join key (`omnigent host` uses it)."""
        return Json(
            await request.app.state.omnigent.control.cluster_info.remote(request.state.user)
        )

    warm_up(app)
    return app
