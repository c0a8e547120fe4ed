"""The host daemon's tunnel: a WebSocket the daemon keeps open while it runs.

Protocol (JSON text frames): the daemon sends `{"type": "register", machine_id, name,
platform, node_ip, home, ...}` and gets `{"type": "registered", "host": {...}}` or
`{"type": "error", "code", "message"}`; then it sends `{"type": "beat"}` every second.
The host is online while beats arrive; a closed socket takes it offline at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from actors.calls import unwrap
from omnigent.api.deps import bearer
from omnigent.errors import OmnigentError, Unauthenticated
from omnigent.ids import new_id

router = APIRouter()
log = logging.getLogger(__name__)


@router.websocket("/v1/hosts/connect")
async def host_tunnel(ws: WebSocket) -> None:
    st = ws.app.state.omnigent
    await ws.accept()  # accept first, so the client sees the contract's close code
    try:
        user = await st.user_for_token(bearer(ws))
    except Unauthenticated:
        await ws.close(code=4401, reason="not authenticated")
        return
    tunnel_id = new_id("tunnel")
    try:
        hello = json.loads(await asyncio.wait_for(ws.receive_text(), 10))
        host = await st.control.register_host.remote(user, tunnel_id, hello)
    except (asyncio.TimeoutError, ValueError, KeyError, TypeError) as exc:
        await _refuse(ws, "invalid_request", f"bad register message: {exc}")
        return
    except WebSocketDisconnect:
        return
    except Exception as exc:  # noqa: BLE001 - an error from the control actor
        cause = unwrap(exc)
        if isinstance(cause, OmnigentError):
            await _refuse(ws, cause.code, cause.message)
            return
        raise
    st.remember_host(host, None)
    host_id = host["id"]
    await ws.send_text(json.dumps({"type": "registered", "host": host}))
    settings = st.settings
    last_beat = 0.0
    try:
        while True:
            await asyncio.wait_for(ws.receive_text(), settings.host_stale_after_s)
            now = time.monotonic()
            if now - last_beat >= settings.heartbeat_interval_s * 0.5:
                last_beat = now
                if not await st.control.host_beat.remote(host_id, tunnel_id):
                    await ws.close(code=4409, reason="replaced by a newer connection")
                    return
    except (WebSocketDisconnect, asyncio.TimeoutError, RuntimeError):
        pass
    finally:
        await st.control.host_disconnected.remote(host_id, tunnel_id)


async def _refuse(ws: WebSocket, code: str, message: str) -> None:
    try:
        await ws.send_text(json.dumps({"type": "error", "code": code, "message": message}))
        await ws.close(code=4400, reason=code[:100])
    except Exception:  # noqa: BLE001 - the daemon may be gone already
        pass
