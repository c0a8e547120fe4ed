"""File resources: upload (streamed to disk on the server's node), list, metadata,
content (with Range, ETag and 304), delete. They work with or without a runner."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import Headers
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response

from actors.calls import call
from omnigent.api import uploads
from omnigent.api.deps import AppState, current_user, state
from omnigent.api.responses import Json
from omnigent.domain.files import content_disposition
from omnigent.errors import ControlUnavailable, FileNotFound, UploadIncomplete
from omnigent.models import ResourceDeleted, ResourceList, ResourcePublic
from omnigent.models.common import error_responses
from omnigent.wire import error_body

router = APIRouter(prefix="/v1/sessions/{session_id}/resources/files", tags=["files"])
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The file; its part's filename and content type "
                            "are kept.",
                        }
                    },
                }
            }
        },
    }
}
_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file's bytes, with its own Content-Type",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    },
    206: {"description": "The requested range of the bytes (`Range`)"},
    304: {"description": "Not modified (`If-None-Match` matched the ETag)"},
    **error_responses(404, 416, 503),
}
User = Annotated[str, Depends(current_user)]
State = Annotated[AppState, Depends(state)]


async def _control(ref, timeout: float = 30.0):
    return await call(ref, timeout=timeout, unreachable=ControlUnavailable)


@router.get("", response_model=ResourceList, responses=error_responses(400, 404, 422, 503))
async def list_files(
    session_id: str,
    user: User,
    st: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after: str | None = None,
    before: str | None = None,
    order: Literal["asc", "desc"] = "desc",
):
    return Json(
        await _control(st.control.list_files.remote(user, session_id, limit, after, before, order))
    )


@router.post(
    "",
    status_code=201,
    response_model=ResourcePublic,
    openapi_extra=_UPLOAD_BODY,
    responses=error_responses(400, 404, 413, 503),
)
async def upload(session_id: str, request: Request, user: User, st: State):
    await _control(st.control.get_session.remote(user, session_id))  # 404 before any byte
    try:
        staged = await uploads.receive(
            request, os.path.join(st.settings.files_dir, ".incoming"), st.settings.file_cap_bytes
        )
    except uploads.Incomplete:  # nobody is listening any more; the body says why anyway
        raise UploadIncomplete("the upload ended before it was complete") from None
    try:
        resource = await _control(
            st.control.add_file.remote(user, session_id, staged.path, staged.meta())
        )
    finally:
        st.forget_extras(session_id)
    return Json(resource, status_code=201)


@router.get("/{file_id}", response_model=ResourcePublic, responses=error_responses(404, 503))
async def get_file(session_id: str, file_id: str, user: User, st: State):
    found = await _control(st.control.get_file.remote(user, session_id, file_id))
    return Json(found["resource"])


@router.head("/{file_id}/content", response_class=Response, responses=_CONTENT)
async def download_head(session_id: str, file_id: str, request: Request, user: User, st: State):
    """As GET, without the body."""
    return await download(session_id, file_id, request, user, st)


@router.get("/{file_id}/content", response_class=Response, responses=_CONTENT)
async def download(session_id: str, file_id: str, request: Request, user: User, st: State):
    found = await _control(st.control.get_file.remote(user, session_id, file_id))
    meta = found["resource"]["metadata"]
    etag = f'"{meta["sha256"]}"'
    headers = {
        "etag": etag,
        "x-content-type-options": "nosniff",
        "content-disposition": content_disposition(meta["filename"]),
        "cache-control": "private, no-cache",
    }
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if not os.path.exists(found["path"]):
        raise FileNotFound(f"file not found: {file_id}")
    return _Download(
        found["path"], size=meta["bytes"], media_type=meta["content_type"], headers=headers
    )


@router.delete("/{file_id}", response_model=ResourceDeleted, responses=error_responses(404, 503))
async def delete_file(session_id: str, file_id: str, user: User, st: State):
    try:
        return Json(await _control(st.control.delete_file.remote(user, session_id, file_id)))
    finally:
        st.forget_extras(session_id)


_READS = ThreadPoolExecutor(4, thread_name_prefix="download")


class _PooledReads:
    def __init__(self, f) -> None:
        self.f = f

    async def read(self, size: int) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(_READS, self.f.read, size)

    async def seek(self, offset: int) -> None:
        self.f.seek(offset)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


class _Download(FileResponse):
    """Starlette's file response (Range, If-Range), reading 1 MiB at a time, with the
    upload's own Content-Type (no charset added), a malformed Range ignored (the whole
    file is sent, as RFC 9110 allows) and an unsatisfiable one answered in the contract's
    error shape."""

    chunk_size = 1024 * 1024

    def __init__(self, path: str, *, size: int, media_type: str, headers: dict) -> None:
        super().__init__(path, media_type=media_type, headers=headers)
        self.headers["content-type"] = media_type
        self.size = size

    @asynccontextmanager
    async def _open_file(self):
        # Starlette reads through AnyIO, which in a Serve replica starts a new worker
        # thread for every download; a long-lived pool of our own does the same reads.
        with open(self.path, "rb") as f:  # buffered: read(n) gives n bytes until the end
            yield _PooledReads(f)

    async def __call__(self, scope, receive, send) -> None:
        wanted = Headers(scope=scope).get("range")
        if wanted is not None:
            try:
                self._parse_range_header(wanted, self.size)  # Starlette's own parser
            except MalformedRangeHeader:
                scope = {**scope, "headers": [h for h in scope["headers"] if h[0] != b"range"]}
            except RangeNotSatisfiable:
                body = error_body(
                    "range_not_satisfiable", f"the range is outside the file's {self.size} bytes"
                )
                response = Json(
                    body, status_code=416, headers={"content-range": f"bytes */{self.size}"}
                )
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
