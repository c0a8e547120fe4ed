"""The host's direct data path (see actors/dataserver.py): directory listings.

Replies: 200 with the page as JSON, or 400 with `{"error_class", "code", "message"}` of
an OmnigentError, which the API raises again as that class.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actors.dataserver import KeyedServer
from omnigent import hostfs
from omnigent.errors import OmnigentError
from omnigent.wire import HOST_ERROR_STATUS


def _error(exc: OmnigentError) -> Response:
    body = {"error_class": type(exc).__name__, "code": exc.code, "message": exc.message}
    return Response(json.dumps(body), HOST_ERROR_STATUS, media_type="application/json")


def host_data_server(bind_ip: str, key: str, home: Callable[[], str]) -> KeyedServer:
    async def list_directory(request: Request) -> Response:
        q = request.query_params
        try:
            # Inline on purpose: a listing takes ~1 ms; a thread hop would cost as much.
            page = hostfs.list_directory(
                q.get("path"),
                home(),
                limit=int(q["limit"]),
                after=q.get("after"),
                before=q.get("before"),
            )
        except OmnigentError as exc:
            return _error(exc)
        body = json.dumps(page, ensure_ascii=False, separators=(",", ":")).encode()
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/fs", list_directory)])
    return KeyedServer(bind_ip, key, app, name="host-data")
