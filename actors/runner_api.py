"""The session resources a runner serves, declared once: this typed router is what the
runner's data path runs (actors/runner_data.py) and what the API's OpenAPI document
shows under `/v1/sessions/{session_id}` (omnigent/api/docs.py). The API forwards these
requests unparsed; the models here validate them, on the host.

Quick file operations run inline; listings, search, changes and diffs in a worker thread;
shell commands as child processes on the event loop, so none of them holds up the others.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Depends, Header, Query, WebSocket
from starlette.requests import HTTPConnection
from starlette.responses import Response

from actors.terminal_pump import pump_terminal
from omnigent import wire
from omnigent.domain.pagination import list_envelope, paginate_by_key
from omnigent.env import fsops, search, shell
from omnigent.env.changes import ChangeTracker
from omnigent.env.paths import resolve
from omnigent.env.terminals import Terminals
from omnigent.errors import (
    EnvironmentNotFound,
    InvalidContent,
    NotFound,
    PathNotFound,
    ResourceNotFound,
)
from omnigent.models import (
    ChangeList,
    DeleteResult,
    EditFile,
    EditResult,
    FileContent,
    FileDiff,
    FileFetched,
    FsListing,
    ResourceDeleted,
    ResourceList,
    ResourcePublic,
    SearchResult,
    ShellCommand,
    ShellResult,
    TerminalCreate,
    TerminalTransfer,
    WriteFile,
    WriteResult,
)
from omnigent.models.common import error_responses


class RunnerResources(Protocol):
    """What the routes need of the runner (actors.runner.RunnerActor)."""

    session_id: str
    root: str
    tracker: ChangeTracker
    child_env: dict[str, str]
    stopped: bool
    assigned: bool

    def environment(self) -> dict: ...
    def resources(self) -> list[dict]: ...
    def fetch_file(self, file_id: str) -> dict: ...
    async def terminals(self) -> Terminals: ...


async def _runner(conn: HTTPConnection) -> RunnerResources:
    return conn.app.state.runner


Runner = Annotated[RunnerResources, Depends(_runner)]


async def _baseline_kept(conn: HTTPConnection) -> None:
    """What can change the workspace waits until the change tracker has kept the
    baseline's bytes (taken in the background after a launch, see ChangeTracker.start):
    a write of ours is then never read as the workspace as it was."""
    tracker = conn.app.state.runner.tracker
    if not tracker.baseline_ready():
        await asyncio.to_thread(tracker.wait_baseline)


Writes = [Depends(_baseline_kept)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]
After = Annotated[str | None, Query(description="Keyset cursor: items after this id.")]
Before = Annotated[str | None, Query(description="Keyset cursor: items before this id.")]
Order = Annotated[Literal["asc", "desc"], Query(description="Sort direction.")]
SearchLimit = Annotated[int, Query(ge=1, le=500)]
SearchQuery = Annotated[
    str,
    Query(
        pattern=r"\S", description="Case-insensitive substring of a file's name or relative path."
    ),
]
Globs = Annotated[str | None, Query(description="Comma-separated globs.")]
Acting = Annotated[str | None, Header(alias=wire.SESSION_HEADER, include_in_schema=False)]
EnvPath = Annotated[str, "a path relative to the environment root"]

_ENV = error_responses(400, 404, 422)
router = APIRouter(prefix="/resources")


def _dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _json(body: Any, status: int = 200) -> Response:
    return Response(_dumps(body), status, media_type="application/json")


def _root(runner: RunnerResources, environment_id: str) -> str:
    if environment_id != "default":
        raise EnvironmentNotFound(f"environment not found: {environment_id}")
    return runner.root


# generic ----------------------------------------------------------------------------
@router.get("", response_model=ResourceList, tags=["resources"], responses=_ENV)
async def list_resources(
    runner: Runner, type: Literal["environment", "terminal", "file"] | None = None
):
    """The runner-authoritative inventory of the session (the API adds its files)."""
    data = [res for res in runner.resources() if type is None or res["type"] == type]
    return _json(list_envelope(data, False))


@router.get("/environments", response_model=ResourceList, tags=["environments"], responses=_ENV)
async def list_environments(runner: Runner):
    return _json(list_envelope([runner.environment()], False))


@router.get(
    "/environments/{environment_id}",
    response_model=ResourcePublic,
    tags=["environments"],
    responses=_ENV,
)
async def get_environment(environment_id: str, runner: Runner):
    _root(runner, environment_id)
    return _json(runner.environment())


# filesystem ---------------------------------------------------------------------------
@router.get(
    "/environments/{environment_id}/filesystem",
    response_model=FsListing,
    tags=["environments"],
    responses=_ENV,
)
async def browse_root(
    environment_id: str,
    runner: Runner,
    limit: Limit = 20,
    after: After = None,
    before: Before = None,
    order: Order = "desc",
):
    """The root directory of the environment, one page of entries."""
    return await browse(environment_id, "", runner, limit, after, before, order)


@router.get(
    "/environments/{environment_id}/filesystem/{path:path}",
    response_model=FsListing | FileContent,
    tags=["environments"],
    responses=_ENV,
)
async def browse(
    environment_id: str,
    path: EnvPath,
    runner: Runner,
    limit: Limit = 20,
    after: After = None,
    before: Before = None,
    order: Order = "desc",
):
    """A directory's listing or a file's content (text as UTF-8, binary as base64)."""
    root = _root(runner, environment_id)
    # Inline: a read or a page of a listing takes well under a millisecond or two,
    # less than a hop to a worker thread and back.
    return _json(fsops.get(root, path, limit=limit, after=after, before=before, order=order))


@router.put(
    "/environments/{environment_id}/filesystem/{path:path}",
    response_model=WriteResult,
    tags=["environments"],
    responses=error_responses(400, 404, 409, 422, 502),
    dependencies=Writes,
)
async def write(environment_id: str, path: EnvPath, body: WriteFile, runner: Runner):
    """Create or replace a file, atomically; parent directories are created."""
    root = _root(runner, environment_id)
    if body.encoding == "base64":
        try:
            data = base64.b64decode(body.content, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidContent("content is not valid base64") from None
    else:
        data = body.content.encode()
    return _json(fsops.write_file(root, path, data))


@router.patch(
    "/environments/{environment_id}/filesystem/{path:path}",
    response_model=EditResult,
    tags=["environments"],
    responses=error_responses(400, 404, 409, 422, 502),
    dependencies=Writes,
)
async def edit(environment_id: str, path: EnvPath, body: EditFile, runner: Runner):
    """Replace the one occurrence of `old_text` by `new_text`."""
    root = _root(runner, environment_id)
    return _json(fsops.edit_file(root, path, body.old_text, body.new_text))


@router.delete(
    "/environments/{environment_id}/filesystem/{path:path}",
    response_model=DeleteResult,
    tags=["environments"],
    responses=error_responses(400, 404, 409, 422, 502),
    dependencies=Writes,
)
async def delete(environment_id: str, path: EnvPath, runner: Runner, recursive: bool = False):
    """Delete a file, or a directory (a non-empty one only with `recursive=true`)."""
    root = _root(runner, environment_id)
    return _json(await asyncio.to_thread(fsops.delete_path, root, path, recursive))


# changes, diff, search, shell -----------------------------------------------------------
@router.get(
    "/environments/{environment_id}/changes",
    response_model=ChangeList,
    tags=["environments"],
    responses=_ENV,
)
async def changes(environment_id: str, runner: Runner):
    """Every file created, modified or deleted since the session started."""
    _root(runner, environment_id)
    tracker = runner.tracker
    if tracker.quick():  # nothing new, or a few dirty paths: cheaper than a thread hop
        answer = tracker.changes()
    else:
        answer = await asyncio.to_thread(tracker.changes)
    return Response(_changes_json(runner, answer), media_type="application/json")


def _changes_json(runner: RunnerResources, answer: dict) -> bytes:
    """The tracker answers from its cache when nothing changed: so do we, bytes and all."""
    cached = getattr(runner, "_changes_json", None)
    if cached is None or cached[0] is not answer:
        cached = (answer, _dumps(answer))
        runner._changes_json = cached  # type: ignore[attr-defined]
    return cached[1]


@router.get(
    "/environments/{environment_id}/diff/{path:path}",
    response_model=FileDiff,
    tags=["environments"],
    responses=_ENV,
)
async def diff(environment_id: str, path: EnvPath, runner: Runner):
    """A changed file's bytes at session start (`before`) and now (`after`)."""
    _root(runner, environment_id)
    return _json(await asyncio.to_thread(runner.tracker.diff, path))


@router.get(
    "/environments/{environment_id}/search",
    response_model=SearchResult,
    tags=["environments"],
    responses=_ENV,
)
async def search_root(
    environment_id: str,
    q: SearchQuery,
    runner: Runner,
    include: Globs = None,
    exclude: Globs = None,
    limit: SearchLimit = 500,
):
    """Files whose name or path contains `q`, sorted by path."""
    return await search_under(environment_id, "", q, runner, include, exclude, limit)


@router.get(
    "/environments/{environment_id}/search/{path:path}",
    response_model=SearchResult,
    tags=["environments"],
    responses=_ENV,
)
async def search_under(
    environment_id: str,
    path: EnvPath,
    q: SearchQuery,
    runner: Runner,
    include: Globs = None,
    exclude: Globs = None,
    limit: SearchLimit = 500,
):
    """As the search of the root, under one directory."""
    root = _root(runner, environment_id)
    norm, real = resolve(root, path)
    if norm and not os.path.isdir(real):
        raise PathNotFound(f"no such directory: {norm}")
    return _json(
        await asyncio.to_thread(
            search.search, root, q, include=include, exclude=exclude, limit=limit, under=norm
        )
    )


@router.post(
    "/environments/{environment_id}/shell",
    response_model=ShellResult,
    tags=["environments"],
    responses=_ENV,
    dependencies=Writes,
)
async def run_shell(environment_id: str, body: ShellCommand, runner: Runner):
    """Run a command with the environment root as cwd, in its own process group; on
    timeout the whole group is killed and the partial output returned."""
    root = _root(runner, environment_id)
    result = await shell.run_shell(body.command, root, body.timeout, env=runner.child_env)
    return _json({"object": "session.environment.shell_result", **result, "cwd": root})


@router.post(
    "/files/{file_id}/fetch",
    response_model=FileFetched,
    tags=["files"],
    responses=error_responses(404, 502),
)
async def fetch_file(file_id: str, runner: Runner):
    """Bring an uploaded file to the runner's host for the agent (not in the reference)."""
    return _json(await asyncio.to_thread(runner.fetch_file, file_id))


# terminals ----------------------------------------------------------------------------
@router.get("/terminals", response_model=ResourceList, tags=["terminals"], responses=_ENV)
async def list_terminals(
    runner: Runner,
    acting: Acting = None,
    limit: Limit = 20,
    after: After = None,
    before: Before = None,
    order: Order = "desc",
):
    items = (await runner.terminals()).list(acting)
    page = paginate_by_key(
        items,
        key=lambda t: t["id"],
        limit=limit,
        after=after,
        before=before,
        descending=order == "desc",
    )
    return _json(list_envelope(page.items, page.has_more))


@router.post(
    "/terminals",
    status_code=201,
    response_model=ResourcePublic,
    tags=["terminals"],
    responses={
        200: {"model": ResourcePublic, "description": "The live terminal of this name and key"},
        **error_responses(400, 404, 409, 422),
    },
    dependencies=Writes,
)
async def launch_terminal(body: TerminalCreate, runner: Runner):
    """Launch a terminal the agent spec declares, or return the live one of the same
    `terminal` and `session_key` (200)."""
    resource, created = (await runner.terminals()).launch(body.terminal, body.session_key)
    return _json(resource, 201 if created else 200)


@router.get(
    "/terminals/{terminal_id}", response_model=ResourcePublic, tags=["terminals"], responses=_ENV
)
async def get_terminal(terminal_id: str, runner: Runner, acting: Acting = None):
    return _json((await runner.terminals()).get_live(terminal_id, acting).resource())


@router.delete(
    "/terminals/{terminal_id}", response_model=ResourceDeleted, tags=["terminals"], responses=_ENV
)
async def close_terminal(terminal_id: str, runner: Runner, acting: Acting = None):
    return _json((await runner.terminals()).close(terminal_id, acting))


@router.post(
    "/terminals/{terminal_id}/transfer",
    response_model=ResourcePublic,
    tags=["terminals"],
    responses=error_responses(400, 404, 409, 422),
)
async def transfer_terminal(
    terminal_id: str, body: TerminalTransfer, runner: Runner, acting: Acting = None
):
    """Hand a live terminal to another session; the process keeps running."""
    return _json(
        (await runner.terminals()).transfer(
            terminal_id, acting or runner.session_id, body.target_session_id
        )
    )


@router.websocket("/terminals/{terminal_id}/attach")
async def attach(ws: WebSocket, terminal_id: str, runner: Runner, read_only: bool = False):
    await ws.accept()
    terms = await runner.terminals()
    acting = ws.headers.get(wire.SESSION_HEADER)
    try:
        terms.get_live(terminal_id, acting)
    except NotFound:
        await ws.close(code=wire.CLOSE_GONE)
        return
    await pump_terminal(ws, terms, terminal_id, read_only, acting)


@router.get("/{resource_id}", response_model=ResourcePublic, tags=["resources"], responses=_ENV)
async def get_resource(resource_id: str, runner: Runner):
    """Any resource of the session by its id, whatever its type."""
    for res in runner.resources():
        if res["id"] == resource_id:
            return _json(res)
    raise ResourceNotFound(f"resource not found: {resource_id}")
