"""The terminal WebSocket: `…/terminals/{id}/attach`, relayed to the session's runner.

Ray tells the API where the runner's data path is; the keystrokes and the output then
take one WebSocket hop from the API replica to the runner's process on the host, which
owns the pty. Launching goes through the generic forwarding route; the other REST terminal routes
are here because a terminal handed to another session stays where it runs.
Close codes: 4401 not authenticated, 4404 unknown or exited terminal (or a session the
caller cannot see), 1011 the runner is not available.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal

import aiohttp
from fastapi import APIRouter, Depends, Query, WebSocket, WebSocketDisconnect
from starlette.responses import Response
from yarl import URL

from actors.calls import call
from omnigent import wire
from omnigent.api.deps import AppState, bearer, current_user, state
from omnigent.api.responses import Json
from omnigent.api.runnerlink import RunnerLink
from omnigent.domain.pagination import list_envelope, paginate_by_key
from omnigent.errors import (
    ControlUnavailable,
    NotFound,
    OmnigentError,
    RunnerNotBound,
    RunnerUnavailable,
    TerminalExists,
)
from omnigent.models import ResourceDeleted, ResourceList, ResourcePublic, TerminalTransfer
from omnigent.models.common import error_responses
from omnigent.wire import KEY_HEADER, SESSION_HEADER

router = APIRouter()
AUTH_WAIT_S = 10
PREFIX = "/v1/sessions/{session_id}/resources/terminals"
_ERRORS = error_responses(400, 404, 409, 422, 503, 504)
User = Annotated[str, Depends(current_user)]
State = Annotated[AppState, Depends(state)]


# Where a terminal is: a session's terminals run on its own runner, except those another
# session handed to it (transfer), which stay on the runner that started them; the
# ControlActor remembers those. Requests for them carry the session they are made for.
async def _routes(st: AppState, user: str, session_id: str) -> dict:
    return await call(
        st.control.terminal_routes.remote(user, session_id),
        timeout=10,
        unreachable=ControlUnavailable,
    )


async def _locate(
    st: AppState, user: str, session_id: str, terminal_id: str
) -> tuple[RunnerLink, dict]:
    routes = await _routes(st, user, session_id)
    moved = routes["moved_in"].get(terminal_id)
    if moved is not None:
        link = await st.link_for_runner(moved["runner_id"], moved["host_id"])
        return link, {SESSION_HEADER: session_id}
    if routes["own"] is None:
        raise _no_runner(routes["reason"])
    return await st.runner_link(user, session_id), {}


def _no_runner(reason: str | None) -> OmnigentError:
    if reason == "runner_not_bound":
        return RunnerNotBound("the session has no runner bound; launch one first")
    return RunnerUnavailable("the session's runner is not available")


def _reply(status: int, data: bytes, headers: dict[str, str]) -> Response:
    return Response(data, status, headers=headers)


async def moved_in_terminals(
    st: AppState, user: str, session_id: str, routes: dict | None = None
) -> list[dict]:
    """The terminals other sessions handed to this one, as resources (asked of the
    runners they run on: whether they still live is theirs to say)."""
    if routes is None:
        routes = await _routes(st, user, session_id)
    found: list[dict] = []
    for runner in {m["runner_id"]: m for m in routes["moved_in"].values()}.values():
        link = await st.link_for_runner(runner["runner_id"], runner["host_id"])
        status, data, _ = await st.forward_via(
            link,
            "GET",
            "/resources/terminals",
            "limit=1000&order=asc",
            headers={SESSION_HEADER: session_id},
        )
        if status == 200:
            found += json.loads(data)["data"]
    return found


@router.get(PREFIX, response_model=ResourceList, tags=["terminals"], responses=_ERRORS)
async def list_terminals(
    session_id: str,
    user: User,
    st: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after: str | None = None,
    before: str | None = None,
    order: Literal["asc", "desc"] = "desc",
):
    routes = await _routes(st, user, session_id)
    if routes["own"] is None and not routes["moved_in"]:
        raise _no_runner(routes["reason"])
    items: list[dict] = []
    places: list[tuple[RunnerLink, dict]] = []
    if routes["own"] is not None:
        places.append((await st.runner_link(user, session_id), {}))
    for runner in {m["runner_id"]: m for m in routes["moved_in"].values()}.values():
        places.append(
            (
                await st.link_for_runner(runner["runner_id"], runner["host_id"]),
                {SESSION_HEADER: session_id},
            )
        )
    for link, headers in places:
        status, data, ctype = await st.forward_via(
            link, "GET", "/resources/terminals", "limit=1000&order=asc", headers=headers
        )
        if status != 200:
            return _reply(status, data, ctype)
        items += json.loads(data)["data"]
    page = paginate_by_key(
        items,
        key=lambda t: t["id"],
        limit=limit,
        after=after,
        before=before,
        descending=order == "desc",
    )
    return Json(list_envelope(page.items, page.has_more))


@router.get(
    PREFIX + "/{terminal_id}", response_model=ResourcePublic, tags=["terminals"], responses=_ERRORS
)
async def get_terminal(session_id: str, terminal_id: str, user: User, st: State):
    link, headers = await _locate(st, user, session_id, terminal_id)
    return _reply(
        *await st.forward_via(link, "GET", f"/resources/terminals/{terminal_id}", headers=headers)
    )


@router.delete(
    PREFIX + "/{terminal_id}", response_model=ResourceDeleted, tags=["terminals"], responses=_ERRORS
)
async def close_terminal(session_id: str, terminal_id: str, user: User, st: State):
    link, headers = await _locate(st, user, session_id, terminal_id)
    answer = await st.forward_via(
        link, "DELETE", f"/resources/terminals/{terminal_id}", headers=headers
    )
    if headers and answer[0] in (200, 404):
        await call(
            st.control.forget_terminal.remote(session_id, terminal_id),
            timeout=10,
            unreachable=ControlUnavailable,
        )
        st.forget_extras(session_id)
    return _reply(*answer)


@router.post(
    PREFIX + "/{terminal_id}/transfer",
    response_model=ResourcePublic,
    tags=["terminals"],
    responses=_ERRORS,
)
async def transfer_terminal(
    session_id: str, terminal_id: str, body: TerminalTransfer, user: User, st: State
):
    target = body.target_session_id
    target_routes = await _routes(st, user, target)  # 404 for unknown / another user's
    link, headers = await _locate(st, user, session_id, terminal_id)
    if target == session_id or terminal_id in target_routes["moved_in"]:
        raise TerminalExists(f"session {target} already has {terminal_id}")
    if target_routes["own"] is not None:
        own = await st.runner_link(user, target)
        if own.runner_id != link.runner_id:
            status, _, _ = await st.forward_via(own, "GET", f"/resources/terminals/{terminal_id}")
            if status == 200:
                raise TerminalExists(f"session {target} already has {terminal_id}")
    answer = await st.forward_via(
        link,
        "POST",
        f"/resources/terminals/{terminal_id}/transfer",
        body=body.model_dump_json().encode(),
        content_type="application/json",
        headers=headers,
    )
    if answer[0] == 200:
        await call(
            st.control.terminal_moved.remote(session_id, target, terminal_id, link.runner_id),
            timeout=10,
            unreachable=ControlUnavailable,
        )
        st.forget_extras(session_id, target)
    return _reply(*answer)


@router.websocket("/v1/sessions/{session_id}/resources/terminals/{terminal_id}/attach")
async def attach(ws: WebSocket, session_id: str, terminal_id: str) -> None:
    st = ws.app.state.omnigent
    await ws.accept()  # first, so the client sees the contract's close codes
    try:
        user = await st.user_for_token(bearer(ws) or await _token_frame(ws))
        link, headers = await _locate(st, user, session_id, terminal_id)
    except (NotFound, RunnerNotBound):
        await ws.close(code=wire.CLOSE_GONE, reason="no such terminal")
        return
    except OmnigentError as exc:
        await ws.close(code=wire.close_code_for(exc), reason=exc.message[:120])
        return
    except WebSocketDisconnect:
        return
    query = "?read_only=true" if ws.query_params.get("read_only") == "true" else ""
    url = URL(f"{link.url}/resources/terminals/{terminal_id}/attach{query}", encoded=False)
    try:
        upstream = await st.http.ws_connect(
            url, headers={KEY_HEADER: link.key, **headers}, max_msg_size=0, autoping=True
        )
    except aiohttp.ClientError:
        await ws.close(code=wire.CLOSE_UNAVAILABLE, reason="the session's runner is not reachable")
        return
    async with upstream:
        await _relay(ws, upstream)


async def _token_frame(ws: WebSocket) -> str | None:
    """Browsers cannot set headers on a WebSocket: `{"type": "auth", "token": …}` first."""
    try:
        text = await asyncio.wait_for(ws.receive_text(), AUTH_WAIT_S)
        frame = json.loads(text)
    except (TimeoutError, ValueError, KeyError, TypeError):
        return None
    if isinstance(frame, dict) and frame.get("type") == "auth":
        token = frame.get("token")
        return token if isinstance(token, str) else None
    return None


async def _relay(ws: WebSocket, upstream: aiohttp.ClientWebSocketResponse) -> None:
    async def client_to_runner() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send_str(message["text"])

    async def runner_to_client() -> int:
        async for message in upstream:
            if message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_text(message.data)
            else:
                break
        return upstream.close_code or wire.CLOSE_UNAVAILABLE

    up = asyncio.create_task(client_to_runner())
    down = asyncio.create_task(runner_to_client())
    done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    if down in done and not down.cancelled() and down.exception() is None:
        up.cancel()
        try:
            await ws.close(code=down.result())
        except RuntimeError:
            pass
    else:
        down.cancel()
        await upstream.close()
