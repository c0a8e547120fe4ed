"""One client attached to a terminal over a WebSocket, on the runner's data path: output
goes out through a queue drained by a writer task (its size is the client's lag); binary
frames, and text that is not a control message, are input; `{"type": "resize", "cols",
"rows"}` resizes (CONTRACT.md, terminal WebSocket)."""

from __future__ import annotations

import asyncio
import json

from fastapi import WebSocket, WebSocketDisconnect

from omnigent.env.terminals import Client, Terminals

FRAME_BYTES = 1024 * 1024  # output queued for a slow-ish client is sent in frames this big


async def pump_terminal(
    ws: WebSocket, terms: Terminals, terminal_id: str, read_only: bool, acting: str | None = None
) -> None:
    """One attached client: output goes out through a queue drained by a writer task
    (its size is the client's lag); binary frames, and text that is not a control
    message, are input; `{"type": "resize", "cols", "rows"}` resizes."""
    queue: asyncio.Queue = asyncio.Queue()
    lag = [0]
    closing: list[int] = []

    def send(data: bytes) -> None:
        lag[0] += len(data)
        queue.put_nowait(data)

    def close(code: int) -> None:
        closing.append(code)
        queue.put_nowait(None)

    client = Client(send, close, lambda: lag[0], read_only)

    async def writer() -> None:
        while True:
            data = await queue.get()
            if data is not None and not queue.empty():
                frame = bytearray(data)  # what queued up meanwhile goes in one frame
                while not queue.empty() and len(frame) < FRAME_BYTES:
                    more = queue.get_nowait()
                    if more is None:
                        queue.put_nowait(None)
                        break
                    frame += more
                data = bytes(frame)
            if data is None:
                await ws.close(code=closing[0])
                return
            await ws.send_bytes(data)
            lag[0] -= len(data)

    terms.attach(terminal_id, client, acting)
    out = asyncio.create_task(writer())
    try:
        while not out.done():
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                terms.write(terminal_id, client, message["bytes"], acting)
            elif message.get("text") is not None:
                control = _control_message(message["text"])
                if control is None:
                    terms.write(terminal_id, client, message["text"].encode(), acting)
                elif control.get("type") == "resize" and not read_only:
                    terms.resize(terminal_id, int(control["cols"]), int(control["rows"]), acting)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        terms.detach(terminal_id, client, acting)
        if not out.done():
            out.cancel()


def _control_message(text: str) -> dict | None:
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("type") == "resize":
        try:
            int(data["cols"]), int(data["rows"])
        except (KeyError, TypeError, ValueError):
            return None
        return data
    return data if isinstance(data, dict) and data.get("type") == "auth" else None
