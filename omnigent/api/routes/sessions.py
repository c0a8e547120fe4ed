"""Sessions (CONTRACT.md) and runners."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from actors.calls import call
from omnigent.api.deps import AppState, current_user, state
from omnigent.api.responses import Json
from omnigent.errors import ControlUnavailable, WorkspaceRequired
from omnigent.models import RunnerPublic, SessionCreate, SessionDeleted, SessionList, SessionPublic
from omnigent.models.common import error_responses

router = APIRouter(prefix="/v1", tags=["sessions"])
User = Annotated[str, Depends(current_user)]
State = Annotated[AppState, Depends(state)]


async def _control(st: AppState, ref, timeout: float = 10.0, status: int = 200) -> Json:
    return Json(
        await call(ref, timeout=timeout, unreachable=ControlUnavailable), status_code=status
    )


@router.post(
    "/sessions",
    status_code=201,
    response_model=SessionPublic,
    responses=error_responses(400, 403, 404, 409, 422, 502, 503, 504),
)
async def create_session(body: SessionCreate, user: User, st: State):
    if body.host_id and not body.workspace:
        raise WorkspaceRequired("workspace is required with host_id")
    data = body.model_dump(exclude_none=True)
    if body.git:
        data["git"] = body.git.model_dump()
    return await _control(
        st,
        st.control.create_session.remote(user, data),
        st.settings.launch_timeout_s + 10,
        status=201,
    )


@router.get("/sessions", response_model=SessionList, responses=error_responses(400, 422, 503))
async def list_sessions(
    user: User,
    st: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after: str | None = None,
    before: str | None = None,
    order: Literal["asc", "desc"] = "desc",
):
    return await _control(st, st.control.list_sessions.remote(user, limit, after, before, order))


@router.get(
    "/sessions/{session_id}", response_model=SessionPublic, responses=error_responses(404, 503)
)
async def get_session(session_id: str, user: User, st: State):
    return await _control(st, st.control.get_session.remote(user, session_id))


@router.delete(
    "/sessions/{session_id}", response_model=SessionDeleted, responses=error_responses(404, 503)
)
async def delete_session(session_id: str, user: User, st: State):
    try:
        return await _control(st, st.control.delete_session.remote(user, session_id), 30)
    finally:
        st.forget_extras(session_id)


@router.get(
    "/runners/{runner_id}", response_model=RunnerPublic, responses=error_responses(404, 503)
)
async def get_runner(runner_id: str, user: User, st: State):
    return await _control(st, st.control.get_runner.remote(user, runner_id))
