"""The runner's direct data path: the session's resources, served from the RunnerActor's
own process on the host (see actors/dataserver.py).

The API forwards `/v1/sessions/{sid}/resources/...` here as `/resources/...`, body and
query untouched, and passes the answer back as it is: this app validates the request and
renders the contract's error body itself. Quick file operations run inline; listings,
search, changes and diffs in a worker thread; shell commands as child processes on the
event loop, so none of them holds up the others.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, FastAPI, Header, Query, WebSocket, WebSocketDisconnect
from starlette.responses import Response

from omnigent.api import errors as http_errors
from omnigent.domain.pagination import list_envelope, paginate_by_key
from omnigent.env import fsops, search, shell
from omnigent.env.paths import resolve
from omnigent.env.terminals import CLOSE_GONE, MAX_TERMINALS, Client, Terminals
from omnigent.errors import (
    EnvironmentNotFound,
    InvalidContent,
    NotFound,
    PathNotFound,
    ResourceNotFound,
    RunnerUnavailable,
)
from omnigent.models import EditFile, ShellCommand, TerminalCreate, TerminalTransfer, WriteFile

if TYPE_CHECKING:
    from actors.runner import RunnerActor

GONE_HEADER = "x-omnigent-runner-gone"
SESSION_HEADER = "x-omnigent-session"  # the session a terminal request is made for
MAX_TERMINALS_ENV = "OMNIGENT_MAX_TERMINALS"  # live terminals per runner, on the host
FRAME_BYTES = 1024 * 1024  # output queued for a slow-ish client is sent in frames this big
Limit = Annotated[int, Query(ge=1, le=1000)]
Order = Literal["asc", "desc"]
Acting = Annotated[str | None, Header(alias=SESSION_HEADER)]


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
                    status, media_type="application/json")


def runner_app(runner: "RunnerActor"):
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    http_errors.install(app)
    r = APIRouter(prefix="/resources")
    last_changes: list = [None, b""]  # the last changes answer and its JSON

    def env_root(environment_id: str) -> str:
        if environment_id != "default":
            raise EnvironmentNotFound(f"environment not found: {environment_id}")
        return runner.root

    # generic ----------------------------------------------------------------------
    @r.get("")
    async def list_resources(type: Literal["environment", "terminal", "file"] | None = None):
        data = [res for res in runner.resources() if type is None or res["type"] == type]
        return _json({"object": "list", "data": data,
                      "first_id": data[0]["id"] if data else None,
                      "last_id": data[-1]["id"] if data else None, "has_more": False})

    @r.get("/environments")
    async def list_environments():
        return await list_resources("environment")

    @r.get("/environments/{environment_id}")
    async def get_environment(environment_id: str):
        env_root(environment_id)
        return _json(runner.environment())

    # filesystem -------------------------------------------------------------------
    @r.get("/environments/{environment_id}/filesystem")
    async def browse_root(environment_id: str, limit: Limit = 20, after: str | None = None,
                          before: str | None = None, order: Order = "desc"):
        return await browse(environment_id, "", limit, after, before, order)

    @r.get("/environments/{environment_id}/filesystem/{path:path}")
    async def browse(environment_id: str, path: str, limit: Limit = 20,
                     after: str | None = None, before: str | None = None,
                     order: Order = "desc"):
        root = env_root(environment_id)
        # Inline: a read or a page of a listing takes well under a millisecond or two,
        # less than a hop to a worker thread and back.
        return _json(fsops.get(root, path, limit=limit, after=after, before=before,
                               order=order))

    @r.put("/environments/{environment_id}/filesystem/{path:path}")
    async def write(environment_id: str, path: str, body: WriteFile):
        root = env_root(environment_id)
        if body.encoding == "base64":
            try:
                data = base64.b64decode(body.content, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidContent("content is not valid base64")
        else:
            data = body.content.encode()
        return _json(fsops.write_file(root, path, data))

    @r.patch("/environments/{environment_id}/filesystem/{path:path}")
    async def edit(environment_id: str, path: str, body: EditFile):
        root = env_root(environment_id)
        return _json(fsops.edit_file(root, path, body.old_text, body.new_text))

    @r.delete("/environments/{environment_id}/filesystem/{path:path}")
    async def delete(environment_id: str, path: str, recursive: bool = False):
        root = env_root(environment_id)
        return _json(await asyncio.to_thread(fsops.delete_path, root, path, recursive))

    # changes, diff, search, shell ---------------------------------------------------
    @r.get("/environments/{environment_id}/changes")
    async def changes(environment_id: str):
        env_root(environment_id)
        tracker = runner.tracker
        if tracker.quick():  # nothing new, or a few dirty paths: cheaper than a thread hop
            answer = tracker.changes()
        else:
            answer = await asyncio.to_thread(tracker.changes)
        if answer is not last_changes[0]:  # the tracker answers from its cache if it can
            last_changes[:] = [answer, _json(answer).body]
        return Response(last_changes[1], media_type="application/json")

    @r.get("/environments/{environment_id}/diff/{path:path}")
    async def diff(environment_id: str, path: str):
        env_root(environment_id)
        return _json(await asyncio.to_thread(runner.tracker.diff, path))

    @r.get("/environments/{environment_id}/search")
    async def search_root(environment_id: str, q: Annotated[str, Query(pattern=r"\S")],
                          include: str | None = None, exclude: str | None = None,
                          limit: Annotated[int, Query(ge=1, le=500)] = 500):
        return await search_under(environment_id, "", q, include, exclude, limit)

    @r.get("/environments/{environment_id}/search/{path:path}")
    async def search_under(environment_id: str, path: str,
                           q: Annotated[str, Query(pattern=r"\S")],
                           include: str | None = None, exclude: str | None = None,
                           limit: Annotated[int, Query(ge=1, le=500)] = 500):
        root = env_root(environment_id)
        norm, real = resolve(root, path)
        if norm and not os.path.isdir(real):
            raise PathNotFound(f"no such directory: {norm}")
        return _json(await asyncio.to_thread(
            search.search, root, q, include=include, exclude=exclude, limit=limit, under=norm))

    @r.post("/environments/{environment_id}/shell")
    async def run_shell(environment_id: str, body: ShellCommand):
        root = env_root(environment_id)
        result = await shell.run_shell(body.command, root, body.timeout, env=runner.child_env)
        return _json({"object": "session.environment.shell_result", **result, "cwd": root})

    @r.post("/files/{file_id}/fetch")
    async def fetch_file(file_id: str):
        """Bring an uploaded file to this host for the agent (not in the reference)."""
        try:
            return _json(await asyncio.to_thread(runner.fetch_file, file_id))
        except Exception as exc:  # the server's NotFound comes back wrapped by Ray
            from actors.calls import unwrap

            raise unwrap(exc) from None

    # terminals --------------------------------------------------------------------
    async def terminals() -> Terminals:
        if runner.terminals is None:
            declared = await asyncio.to_thread(runner.declared_terminals)
            if runner.terminals is None:
                runner.terminals = Terminals(
                    runner.root, runner.session_id, declared,
                    max_terminals=int(os.environ.get(MAX_TERMINALS_ENV, MAX_TERMINALS)),
                    env=runner.child_env)
        return runner.terminals

    @r.get("/terminals")
    async def list_terminals(acting: Acting = None, limit: Limit = 20,
                             after: str | None = None, before: str | None = None,
                             order: Order = "desc"):
        items = (await terminals()).list(acting)
        page = paginate_by_key(items, key=lambda t: t["id"], limit=limit, after=after,
                               before=before, descending=order == "desc")
        return _json(list_envelope(page.items, page.has_more))

    @r.post("/terminals")
    async def launch_terminal(body: TerminalCreate):
        resource, created = (await terminals()).launch(body.terminal, body.session_key)
        return _json(resource, 201 if created else 200)

    @r.get("/terminals/{terminal_id}")
    async def get_terminal(terminal_id: str, acting: Acting = None):
        return _json((await terminals()).get_live(terminal_id, acting).resource())

    @r.delete("/terminals/{terminal_id}")
    async def close_terminal(terminal_id: str, acting: Acting = None):
        return _json((await terminals()).close(terminal_id, acting))

    @r.post("/terminals/{terminal_id}/transfer")
    async def transfer_terminal(terminal_id: str, body: TerminalTransfer, acting: Acting = None):
        return _json((await terminals()).transfer(terminal_id, acting or runner.session_id,
                                                  body.target_session_id))

    @r.websocket("/terminals/{terminal_id}/attach")
    async def attach(ws: WebSocket, terminal_id: str, read_only: bool = False):
        await ws.accept()
        terms = await terminals()
        acting = ws.headers.get(SESSION_HEADER)
        try:
            terms.get_live(terminal_id, acting)
        except NotFound:
            await ws.close(code=CLOSE_GONE)
            return
        await pump_terminal(ws, terms, terminal_id, read_only, acting)

    @r.get("/{resource_id}")
    async def get_resource(resource_id: str):
        for res in runner.resources():
            if res["id"] == resource_id:
                return _json(res)
        raise ResourceNotFound(f"resource not found: {resource_id}")

    app.include_router(r)
    return _RefuseWhenStopped(app, runner)


async def pump_terminal(ws: WebSocket, terms: Terminals, terminal_id: str,
                        read_only: bool, acting: str | None = None) -> None:
    """One attached client: output goes out through a queue drained by a writer task
    (its size is the client's lag); binary frames, and text that is not a control
    message, are input; `{"type": "resize", "cols", "rows"}` resizes."""
    queue: asyncio.Queue = asyncio.Queue()
    lag = [0]
    closing: list[int] = []

    def send(data: bytes) -> None:
        lag[0] += len(data)
        queue.put_nowait(data)

    def close(code: int) -> None:
        closing.append(code)
        queue.put_nowait(None)

    client = Client(send, close, lambda: lag[0], read_only)

    async def writer() -> None:
        while True:
            data = await queue.get()
            if data is not None and not queue.empty():
                frame = bytearray(data)  # what queued up meanwhile goes in one frame
                while not queue.empty() and len(frame) < FRAME_BYTES:
                    more = queue.get_nowait()
                    if more is None:
                        queue.put_nowait(None)
                        break
                    frame += more
                data = bytes(frame)
            if data is None:
                await ws.close(code=closing[0])
                return
            await ws.send_bytes(data)
            lag[0] -= len(data)

    terms.attach(terminal_id, client, acting)
    out = asyncio.create_task(writer())
    try:
        while not out.done():
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                terms.write(terminal_id, client, message["bytes"], acting)
            elif message.get("text") is not None:
                control = _control_message(message["text"])
                if control is None:
                    terms.write(terminal_id, client, message["text"].encode(), acting)
                elif control.get("type") == "resize" and not read_only:
                    terms.resize(terminal_id, int(control["cols"]), int(control["rows"]),
                                 acting)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        terms.detach(terminal_id, client, acting)
        if not out.done():
            out.cancel()


def _control_message(text: str) -> dict | None:
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("type") == "resize":
        try:
            int(data["cols"]), int(data["rows"])
        except (KeyError, TypeError, ValueError):
            return None
        return data
    return data if isinstance(data, dict) and data.get("type") == "auth" else None


class _RefuseWhenStopped:
    """A stopped runner answers nothing but 503 with the gone header (the API then looks
    the session up again). Plain ASGI: no per-request cost worth measuring."""

    def __init__(self, app, runner: "RunnerActor") -> None:
        self.app = app
        self.runner = runner

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.runner.stopped:
            exc = RunnerUnavailable("the runner has stopped")
            body = json.dumps(http_errors.error_body(exc.code, exc.message)).encode()
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (GONE_HEADER.encode(), b"1")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
