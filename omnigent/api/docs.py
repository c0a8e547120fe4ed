"""The OpenAPI document: the API's own routes, plus the runner's resource routes
(actors/runner_api.py) as the API serves them under `/v1/sessions/{session_id}`, with the
bearer scheme and the contract's error body on every error status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from actors import runner_api
from omnigent import __version__
from omnigent.models.common import error_responses

DESCRIPTION = """\
The Omnigent Hosts and Session resources API, served by Ray.

Every `/v1` route needs `Authorization: Bearer <token>` (`omnigent token create USER`).
Errors answer `{"error": {"code", "message"}}`; clients key on the status and `error.code`.
Lists answer `{"object": "list", "data", "first_id", "last_id", "has_more"}` with keyset
cursors `after` / `before`.

**Terminal WebSocket** — `GET /v1/sessions/{session_id}/resources/terminals/{terminal_id}/attach`
(query `read_only=true|false`) upgrades to a WebSocket. The token goes in the
`Authorization` header, or (browsers) as the first text frame `{"type": "auth", "token"}`.
The server first replays the terminal's recent output, then sends its output as binary
frames; binary frames (and text that is not a JSON control message) from the client are
keystrokes, dropped when read-only; `{"type": "resize", "cols": N, "rows": M}` resizes.
Close codes: 4401 not authenticated, 4403 not allowed, 4404 unknown or exited terminal,
1013 the client did not keep up with the output, 1011 the runner is not reachable.
"""

TAGS = [
    {"name": "hosts", "description": "Machines that joined the cluster as the caller's."},
    {"name": "sessions", "description": "Sessions and the runners bound to them."},
    {"name": "resources", "description": "Every resource of a session, by id."},
    {"name": "files", "description": "Files uploaded to a session (kept on the server)."},
    {
        "name": "terminals",
        "description": "Interactive terminals on the session's host; "
        "attach over the WebSocket described above.",
    },
    {
        "name": "environments",
        "description": "The session's workspace on its host: "
        "browse, read, write, edit, delete, changes, diff, search, shell.",
    },
    {"name": "cluster", "description": "Joining the server's Ray cluster."},
]


async def _session_path(
    session_id: Annotated[
        str, Path(description="The session (`conv_…`).", examples=["conv_3fa9c2d1e4b5"])
    ],
) -> None:
    """Declares the path parameter the runner's routes get from the API's prefix."""


def _runner_routes(served: set[tuple[str, str]]) -> list[APIRoute]:
    """The runner's routes as the API serves them (under its prefix, behind its checks),
    less those the API answers itself."""
    docs = APIRouter()
    prefix = "/v1/sessions/{session_id}"
    for route in runner_api.router.routes:
        if not isinstance(route, APIRoute):
            continue
        methods = route.methods or set()  # typed optional; an APIRoute's is always a set
        if {(prefix + route.path, m.lower()) for m in methods} & served:
            continue
        docs.add_api_route(
            prefix + route.path,
            route.endpoint,
            methods=list(methods),
            response_model=route.response_model,
            status_code=route.status_code,
            tags=route.tags,
            description=route.description,
            name=route.name,
            dependencies=[Depends(_session_path), *route.dependencies],
            responses={**error_responses(401, 409, 503, 504), **route.responses},
        )
    return list(docs.routes)  # type: ignore[arg-type]


def openapi_document(app: FastAPI) -> dict[str, Any]:
    own = get_openapi(title="omnigent-on-ray", version=__version__, routes=app.routes)
    served = {(path, method) for path, ops in own["paths"].items() for method in ops}
    schema = get_openapi(
        title="omnigent-on-ray",
        version=__version__,
        openapi_version="3.1.0",
        description=DESCRIPTION,
        tags=TAGS,
        routes=[*app.routes, *_runner_routes(served)],
    )
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `omnigent token create USER`.",
        }
    }
    schema["security"] = [{"bearerAuth": []}]
    _errors_everywhere(schema)
    return schema


def _errors_everywhere(schema: dict[str, Any]) -> None:
    """What every `/v1` operation can answer: 401 (the auth middleware runs first), and
    422 in the contract's body rather than FastAPI's default validation schema."""
    error_ref = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    }
    for path, ops in schema["paths"].items():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            if path.startswith("/v1/"):
                responses.setdefault(
                    "401", {"description": "Missing or invalid bearer token", **error_ref}
                )
            if "422" in responses:
                responses["422"] = {
                    "description": "The request does not fit the schema "
                    "(`error.code`: `validation_error`)",
                    **error_ref,
                }
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)


def install_openapi(app: FastAPI) -> None:
    def cached() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = cached  # type: ignore[method-assign]
