"""JSON responses without FastAPI's per-field re-encoding: actor results are plain JSON
data already, so a route returns `Json(result)` and the bytes are written once."""

from __future__ import annotations

import json

from starlette.responses import JSONResponse


class Json(JSONResponse):
    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
