"""Building an app's lazy state before its first real request."""

from __future__ import annotations

import asyncio
import threading

from starlette.exceptions import HTTPException


def warm_up(app) -> None:
    """Have FastAPI build its routes' state now: it does so on the first request (~120 ms
    here for the runner's routes), which would otherwise be the first request of a
    session just launched, or the first a new API replica serves. One
    request for a path no route has, straight to the router (no middleware: no auth), in
    a thread of its own (the caller may be on a running event loop)."""

    async def request() -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/-warm-up",
            "raw_path": b"/-warm-up",
            "query_string": b"",
            "headers": [],
            "app": app,
        }

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            pass

        try:
            await app.router(scope, receive, send)
        except HTTPException:  # the 404, raised for the app's handlers to render
            pass

    thread = threading.Thread(target=asyncio.run, args=(request(),), name="warm-up")
    thread.start()
    thread.join()
