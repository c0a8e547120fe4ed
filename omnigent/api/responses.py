"""JSON responses without FastAPI's per-field re-encoding: actor results are plain JSON
data already, so a route returns `Json(result)` and the bytes are written once."""

from __future__ import annotations

import json

from starlette.responses import JSONResponse, Response


class Json(JSONResponse):
    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def json_bytes(body: bytes, status_code: int = 200) -> Response:
    """A body that is JSON already (encoded where it was made)."""
    return Response(body, status_code, media_type="application/json")
