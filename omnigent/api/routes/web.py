"""The web UI: `/` (index.html) and its static assets under `/ui/…`, from the package's
`omnigent/web/` directory. No authentication here: these files hold no data; every data
call the page makes goes to /v1 with the bearer token. Not in the OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from omnigent.errors import NotFound

WEB = Path(__file__).resolve().parent.parent.parent / "web"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The page loads only its own scripts and styles, talks only to its own origin (HTTP and
# WebSocket), shows images it made from data (blob:/data:), and may not be framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
HEADERS = {
    # revalidated on every load (ETag / Last-Modified): a new version shows at once
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


def _file(request: Request, relative: str) -> Response:
    path = (WEB / relative).resolve()
    if WEB not in path.parents or not path.is_file() or path.suffix not in TYPES:
        raise NotFound("no such file")
    headers = dict(HEADERS)
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = CSP
        headers["X-Frame-Options"] = "DENY"
    answer = FileResponse(
        path, media_type=TYPES[path.suffix], headers=headers, stat_result=path.stat()
    )
    etag = answer.headers["etag"]
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers={"ETag": etag, **HEADERS})
    return answer


@router.get("/")
async def index(request: Request) -> Response:
    return _file(request, "index.html")


@router.get("/ui/{path:path}")
async def asset(request: Request, path: str) -> Response:
    return _file(request, path)
