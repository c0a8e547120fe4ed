"""The floor for bench_files.py: plain uvicorn + FastAPI doing the same file work in-process.

    python bench/baseline_files_app.py PORT TOKEN FILES_DIR

- `POST /v1/sessions` -> 201 `{"id"}` (a name only, so the client is the same for both).
- `POST /v1/sessions/{sid}/resources/files`: the very `omnigent.api.uploads.receive` our
  API replica runs (multipart push parser, sha256 on the way, staged under
  `FILES_DIR/.incoming`, fsync), then `os.replace` into `FILES_DIR/<sid>/<id>` as our
  ControlActor does, and 201 with the same resource shape (`file_resource`).
- `GET .../{id}/content`: the same `_Download` FileResponse subclass (1 MiB chunks) with
  the same headers (etag, nosniff, content-disposition, cache-control).
- `DELETE .../{id}`: removes the file (the bench cleans up as it goes).

No Ray, no actor calls, no hop: what our server loses against this is the price of its
distributed path (the session check and `add_file` / `get_file` on the ControlActor).
Same uvicorn settings as our replica (loop and http "auto", i.e. uvloop and httptools when
installed; no access log; lifespan off; keep-alive 75 s). Bearer check as in
baseline_env_app.py.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from omnigent.api import uploads
from omnigent.api.responses import Json
from omnigent.api.routes.files import _Download, _matches
from omnigent.domain.files import content_disposition, file_resource

PORT, TOKEN, FILES = int(sys.argv[1]), sys.argv[2], sys.argv[3]
CAP = int(os.environ.get("OMNIGENT_FILE_CAP_BYTES", str(1024**3)))
META: dict[str, dict] = {}


class BearerCheck:
    def __init__(self, app) -> None:
        self.app = app
        self.want = f"Bearer {TOKEN}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] != "/healthz"
            and dict(scope["headers"]).get(b"authorization") != self.want
        ):
            await Response(status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


api = FastAPI()


@api.get("/healthz")
async def healthz() -> dict:
    return {"ok": True}


@api.post("/v1/sessions", status_code=201)
async def new_session() -> Json:
    return Json({"id": f"sess_{uuid.uuid4().hex}"}, status_code=201)


@api.post("/v1/sessions/{session_id}/resources/files", status_code=201)
async def upload(session_id: str, request: Request):
    try:
        staged = await uploads.receive(request, os.path.join(FILES, ".incoming"), CAP)
    except uploads.Incomplete:
        return Response(status_code=400)
    meta = {
        **staged.meta(),
        "id": f"file_{uuid.uuid4().hex}",
        "session_id": session_id,
        "created_at": int(time.time()),
    }
    path = os.path.join(FILES, session_id, meta["id"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.replace(staged.path, path)
    META[meta["id"]] = meta
    return Json(file_resource(meta), status_code=201)


@api.get("/v1/sessions/{session_id}/resources/files/{file_id}/content")
async def download(session_id: str, file_id: str, request: Request):
    meta = META.get(file_id)
    if meta is None or meta["session_id"] != session_id:
        return Response(status_code=404)
    etag = f'"{meta["sha256"]}"'
    headers = {
        "etag": etag,
        "x-content-type-options": "nosniff",
        "content-disposition": content_disposition(meta["filename"]),
        "cache-control": "private, no-cache",
    }
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    path = os.path.join(FILES, session_id, file_id)
    if not os.path.exists(path):
        return Response(status_code=404)
    return _Download(path, size=meta["bytes"], media_type=meta["content_type"], headers=headers)


@api.delete("/v1/sessions/{session_id}/resources/files/{file_id}")
async def delete_file(session_id: str, file_id: str):
    meta = META.pop(file_id, None)
    if meta is None or meta["session_id"] != session_id:
        return Response(status_code=404)
    try:
        os.unlink(os.path.join(FILES, session_id, file_id))
    except FileNotFoundError:
        pass
    return Json({"id": file_id, "object": "session.resource.deleted", "deleted": True})


app = BearerCheck(api)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=PORT,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws_ping_interval=20,
        ws_ping_timeout=20,
        timeout_keep_alive=75,
    )
