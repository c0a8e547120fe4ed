"""The Hosts API: list, get, browse the host's filesystem, launch a runner."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from actors.calls import call
from omnigent.api.deps import AppState, current_user, state
from omnigent.api.responses import Json, json_bytes
from omnigent.domain.host_paths import normalize_host_path
from omnigent.errors import HostOffline
from omnigent.models import HostEntryList, HostList, HostPublic, LaunchRunner, RunnerLaunched
from omnigent.models.common import error_responses

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])
User = Annotated[str, Depends(current_user)]
State = Annotated[AppState, Depends(state)]
Limit = Annotated[int, Query(ge=1, le=1000)]
_BROWSE = error_responses(400, 403, 404, 409, 422, 502, 504)


@router.get("", response_model=HostList)
async def list_hosts(user: User, st: State):
    hosts = [h for h in st.hosts.values() if h["owner"] == user]
    hosts.sort(key=lambda h: h["id"])
    return Json({"hosts": hosts})


@router.get("/{host_id}", response_model=HostPublic, responses=error_responses(403, 404))
async def get_host(host_id: str, user: User, st: State):
    return Json(st.owned_host(user, host_id))


@router.get("/{host_id}/filesystem", response_model=HostEntryList, responses=_BROWSE)
async def browse_root(
    host_id: str,
    user: User,
    st: State,
    limit: Limit = 20,
    after: str | None = None,
    before: str | None = None,
):
    return await _browse(st, user, host_id, None, limit, after, before)


@router.get("/{host_id}/filesystem/{path:path}", response_model=HostEntryList, responses=_BROWSE)
async def browse_path(
    host_id: str,
    path: str,
    user: User,
    st: State,
    limit: Limit = 20,
    after: str | None = None,
    before: str | None = None,
):
    return await _browse(st, user, host_id, path, limit, after, before)


async def _browse(
    st: AppState,
    user: str,
    host_id: str,
    raw: str | None,
    limit: int,
    after: str | None,
    before: str | None,
):
    st.owned_host(user, host_id)
    path = normalize_host_path(raw)
    if st.hosts[host_id]["status"] != "online":
        raise HostOffline("the host is offline")
    return json_bytes(
        await st.list_host_directory(host_id, path=path, limit=limit, after=after, before=before)
    )


@router.post(
    "/{host_id}/runners",
    response_model=RunnerLaunched,
    responses=error_responses(400, 403, 404, 409, 422, 502, 504),
)
async def launch_runner(host_id: str, body: LaunchRunner, user: User, st: State):
    git = body.git.model_dump() if body.git else None
    return Json(
        await call(
            st.control.launch_runner.remote(user, host_id, body.session_id, body.workspace, git),
            timeout=st.settings.launch_timeout_s + 10,
            unreachable=lambda: HostOffline("the control plane is restarting"),
        )
    )
