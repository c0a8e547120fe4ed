"""Bearer-token authentication as a pure ASGI middleware, so that every /v1 route answers
401 before anything else (body parsing included) looks at the request.
"""

from __future__ import annotations

import json

from omnigent.api.errors import error_body
from omnigent.errors import Unauthenticated


class AuthMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                token = rest.strip() if scheme.lower() == "bearer" else None
                break
        try:
            user = await scope["app"].state.omnigent.user_for_token(token)
        except Unauthenticated as exc:
            body = json.dumps(error_body(exc.code, exc.message)).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)
