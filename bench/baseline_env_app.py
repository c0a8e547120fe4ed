"""The floor for bench_env.py: plain uvicorn doing the same environment work in-process.

    python bench/baseline_env_app.py PORT TOKEN WORKSPACE STATE_DIR

It mounts the very app our runner serves (actors/runner_data.py, the same file
operations, change tracker, search and shell code) at `/v1/sessions/bench`, behind a
bearer-token check, in one process, with no Ray, no API replica and no hop in between:
what is left of our latency above this is the price of the distributed path.
"""

from __future__ import annotations

import os
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Mount, Route

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from actors.runner_data import runner_app  # noqa: E402
from omnigent.env.changes import ChangeTracker  # noqa: E402

PORT, TOKEN, WORKSPACE, STATE = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class InProcessRunner:
    """What runner_app needs of a RunnerActor, without Ray."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.session_id = "bench"
        self.stopped = False
        self.assigned = True
        self.child_env = dict(os.environ)
        self.tracker = ChangeTracker(self.root, STATE)
        self.tracker.start()

    def environment(self) -> dict:
        return {
            "id": "default",
            "object": "session.resource",
            "type": "environment",
            "session_id": self.session_id,
            "name": "default",
            "metadata": {"root": self.root},
        }

    def resources(self) -> list[dict]:
        return [self.environment()]

    def fetch_file(self, file_id: str) -> dict:
        raise NotImplementedError("no uploaded files in the baseline")

    async def terminals(self):
        raise NotImplementedError("no terminals in the baseline")


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


async def healthz(request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


app = BearerCheck(
    Starlette(
        routes=[
            Mount("/v1/sessions/bench", app=runner_app(InProcessRunner(WORKSPACE))),
            Route("/healthz", healthz),
        ]
    )
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False)
