"""The exception handlers of every FastAPI app we serve (the API, and the runners' data
paths): each error becomes the contract's body `{"error": {"code", "message"}}` with the
status of `omnigent.wire`'s one table."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from omnigent import errors as e
from omnigent import wire

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(e.OmnigentError)
    async def _omnigent(_: Request, exc: e.OmnigentError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, e.Unauthenticated) else None
        return JSONResponse(
            wire.error_body(exc.code, exc.message), wire.status_for(exc), headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(d.get("loc", ())), "msg": d.get("msg", ""), "type": d.get("type", "")}
            for d in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse(
            wire.error_body("validation_error", f"{where}: {first['msg']}", details=details),
            wire.VALIDATION_STATUS,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = wire.HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            wire.error_body(code, str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(wire.error_body("internal_error", "internal server error"), 500)
