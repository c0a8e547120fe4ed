"""Session resources served by the session's runner (environments; terminals later), and
the generic resource routes, which add the session's files (kept on the server).

One route forwards them all: the runner, on the host, validates the request and answers
in the contract's shape (actors/runner_data.py), so the API only checks who is asking,
finds the runner, and passes bytes both ways.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from actors.calls import call
from omnigent.api.deps import AppState, current_user, state
from omnigent.api.methods import documented_methods, method_not_allowed
from omnigent.api.responses import Json
from omnigent.errors import ControlUnavailable, InvalidRequest, NotFound, PayloadTooLarge
from omnigent.models import ResourceList, ResourcePublic
from omnigent.models.common import error_responses

router = APIRouter(prefix="/v1/sessions/{session_id}/resources", tags=["resources"])
_ERRORS = error_responses(400, 404, 409, 422, 503, 504)
User = Annotated[str, Depends(current_user)]
State = Annotated[AppState, Depends(state)]

BODY_CAP = 64 * 1024 * 1024  # a JSON body sent to the runner (a file write, a command)
SHELL_TIMEOUT_S = 3600 + 30
DEFAULT_TIMEOUT_S = 60


@router.get("", response_model=ResourceList, responses=_ERRORS)
async def list_resources(
    session_id: str,
    request: Request,
    user: User,
    st: State,
    type: Literal["environment", "terminal", "file"] | None = None,
):
    """The runner's inventory (it must be bound) with the session's files and the
    terminals other sessions handed to this one added; the runner and the ControlActor
    are asked at once, and the latter's answer is kept until it changes
    (`AppState.session_extras`)."""
    from omnigent.api.routes.terminals import moved_in_terminals

    runner, extras = await asyncio.gather(
        _forward(session_id, "", request, user, st),
        st.session_extras(user, session_id),
        return_exceptions=True,
    )
    if isinstance(runner, BaseException):
        raise runner
    status, data, headers = runner
    if status != 200:
        return Response(data, status, headers=headers)
    if isinstance(extras, BaseException):
        raise extras
    routes, files = extras
    body = json.loads(data)
    if type in (None, "terminal") and routes["moved_in"]:
        body["data"] += await moved_in_terminals(st, user, session_id, routes)
    if type not in (None, "file"):
        files = None
    if files is not None:
        body["data"] = [r for r in body["data"] if r["type"] != "file"] + files["data"]
        body["has_more"] = bool(body.get("has_more")) or files["has_more"]
    return Json(_envelope(body))


def _envelope(body: dict) -> dict:
    body["first_id"] = body["data"][0]["id"] if body["data"] else None
    body["last_id"] = body["data"][-1]["id"] if body["data"] else None
    return body


@router.get("/{resource_id}", response_model=ResourcePublic, responses=_ERRORS)
async def get_resource(session_id: str, resource_id: str, request: Request, user: User, st: State):
    if resource_id.startswith("file_"):  # files live on the server, runner or not
        found = await call(
            st.control.get_file.remote(user, session_id, resource_id),
            timeout=30,
            unreachable=ControlUnavailable,
        )
        return Json(found["resource"])
    return await forward(session_id, "/" + resource_id, request, user, st)


@router.api_route(
    "{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def forward(session_id: str, rest: str, request: Request, user: User, st: State):
    """Everything the runner answers (actors/runner_api.py), as the document lists it."""
    methods = documented_methods(request.app).allowed(request.scope["path"])
    if not methods:
        raise NotFound("no such resource route")
    if request.method not in methods:
        return method_not_allowed(request.app, request.scope["path"])
    status, data, headers = await _forward(session_id, rest, request, user, st)
    return Response(data, status, headers=headers)


async def _forward(session_id: str, rest: str, request: Request, user: str, st: AppState):
    body = await _read_body(request)
    timeout = SHELL_TIMEOUT_S if rest.endswith("/shell") else DEFAULT_TIMEOUT_S
    return await st.forward_to_runner(
        user,
        session_id,
        request.method,
        _raw_suffix(request, rest),
        request.url.query,
        body,
        request.headers.get("content-type"),
        timeout,
    )


def _raw_suffix(request: Request, rest: str) -> str:
    """`/resources/...` as the client wrote it (still percent-encoded), so the runner
    judges exactly the path that was asked for."""
    raw = request.scope.get("raw_path")
    if raw:
        parts = raw.split(b"?", 1)[0].split(b"/")
        if len(parts) >= 5 and parts[4] == b"resources":
            return "/" + b"/".join(parts[4:]).decode("latin-1")
    return "/resources" + quote(rest, safe="/")


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("invalid Content-Length")
        if int(declared) > BODY_CAP:
            raise PayloadTooLarge(f"request body over {BODY_CAP} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_CAP:
            raise PayloadTooLarge(f"request body over {BODY_CAP} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
