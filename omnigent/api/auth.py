"""Bearer-token authentication as a pure ASGI middleware, so that every /v1 route answers
401 before anything else (body parsing included) looks at the request.
"""

from __future__ import annotations

from omnigent import wire
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
            await wire.send_error(send, exc, [(b"www-authenticate", b"Bearer")])
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)
