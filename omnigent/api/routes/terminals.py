"""The terminal WebSocket: `…/terminals/{id}/attach`, relayed to the session's runner.

Ray tells the API where the runner's data path is; the keystrokes and the output then
take one WebSocket hop from the API replica to the runner's process on the host, which
owns the pty. The REST terminal routes go through the generic forwarding route.
Close codes: 4401 not authenticated, 4404 unknown or exited terminal (or a session the
caller cannot see), 1011 the runner is not available.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from yarl import URL

from actors.dataserver import KEY_HEADER
from omnigent.api.deps import bearer
from omnigent.errors import NotFound, OmnigentError, Unauthenticated

router = APIRouter()
AUTH_WAIT_S = 10


@router.websocket("/v1/sessions/{session_id}/resources/terminals/{terminal_id}/attach")
async def attach(ws: WebSocket, session_id: str, terminal_id: str) -> None:
    st = ws.app.state.omnigent
    await ws.accept()  # first, so the client sees the contract's close codes
    try:
        user = await st.user_for_token(bearer(ws) or await _token_frame(ws))
        link = await st.runner_link(user, session_id)
    except Unauthenticated:
        await ws.close(code=4401, reason="not authenticated")
        return
    except NotFound:
        await ws.close(code=4404, reason="no such terminal")
        return
    except OmnigentError as exc:
        await ws.close(code=1011, reason=exc.message[:120])
        return
    except WebSocketDisconnect:
        return
    query = "?read_only=true" if ws.query_params.get("read_only") == "true" else ""
    url = URL(f"{link.url}/resources/terminals/{terminal_id}/attach{query}", encoded=False)
    try:
        upstream = await st.http.ws_connect(url, headers={KEY_HEADER: link.key},
                                            max_msg_size=0, autoping=True)
    except aiohttp.ClientError:
        await ws.close(code=1011, reason="the session's runner is not reachable")
        return
    async with upstream:
        await _relay(ws, upstream)


async def _token_frame(ws: WebSocket) -> str | None:
    """Browsers cannot set headers on a WebSocket: `{"type": "auth", "token": …}` first."""
    try:
        text = await asyncio.wait_for(ws.receive_text(), AUTH_WAIT_S)
        frame = json.loads(text)
    except (asyncio.TimeoutError, ValueError, KeyError, TypeError):
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
        return upstream.close_code or 1011

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
