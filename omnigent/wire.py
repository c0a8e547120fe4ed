"""What goes on the wire, in one place: the HTTP status and WebSocket close code of every
branch of the error tree, the error body, and the private headers between the API and
the runners. Everything else that answers (FastAPI handlers, raw ASGI code in the API
and in the runners) takes its numbers from here.
"""

from __future__ import annotations

import json
from typing import Any

from omnigent import errors as e

STATUS: dict[type[e.OmnigentError], int] = {
    e.InvalidRequest: 400,
    e.Unauthenticated: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.PayloadTooLarge: 413,
    e.RangeNotSatisfiable: 416,
    e.HostIOError: 502,
    e.LaunchFailed: 502,
    e.Unavailable: 503,
    e.UpstreamTimeout: 504,
}
VALIDATION_STATUS = 422  # a request that does not fit its declared schema

# WebSocket close codes of the terminal attach protocol (CONTRACT.md).
CLOSE_UNAVAILABLE = 1011  # the runner is not reachable
CLOSE_SLOW = 1013  # the client did not keep up with the output
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_GONE = 4404  # unknown or exited terminal, or a session the caller cannot see

CLOSE: dict[type[e.OmnigentError], int] = {
    e.Unauthenticated: CLOSE_UNAUTHENTICATED,
    e.Forbidden: CLOSE_FORBIDDEN,
    e.NotFound: CLOSE_GONE,
}

# Headers between the API replica and a runner's (or host's) data path.
KEY_HEADER = "x-omnigent-key"  # the data path's secret key
GONE_HEADER = "x-omnigent-runner-gone"  # a stopped runner answered: look it up again
SESSION_HEADER = "x-omnigent-session"  # the session a terminal request is made for
KEY_REFUSED_STATUS = 403  # a data path's answer, empty-bodied, to a request without its key
HOST_ERROR_STATUS = 400  # a host's data path: `{"error_class", "code", "message"}` follows

# Plain HTTP errors Starlette raises itself (no route, wrong method…), by status.
HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def _lookup(table: dict[type[e.OmnigentError], int], exc: e.OmnigentError, default: int) -> int:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return default


def status_for(exc: e.OmnigentError) -> int:
    return _lookup(STATUS, exc, 500)


def close_code_for(exc: e.OmnigentError) -> int:
    return _lookup(CLOSE, exc, CLOSE_UNAVAILABLE)


def error_body(code: str, message: str, **extra: Any) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def error_json(exc: e.OmnigentError) -> bytes:
    return json.dumps(error_body(exc.code, exc.message), ensure_ascii=False).encode()


async def send_error(send, exc: e.OmnigentError, headers: list | None = None) -> None:
    """Answer an HTTP request from raw ASGI code with the contract's error body."""
    body = error_json(exc)
    await send(
        {
            "type": "http.response.start",
            "status": status_for(exc),
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
