"""The one place that finds actor handles, plus authentication.

`AppState` lives in the API replica. It mirrors the ControlActor's host table by
long-poll, so listing and checking hosts costs no actor call, and it remembers tokens it
has checked for `token_cache_s`, forgetting them all as soon as the ControlActor's token
version moves (a token was revoked; followed by a second long-poll, `watch_tokens`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time

import aiohttp
import ray
from fastapi import Request

from actors.calls import call, get_named
from omnigent.api.hostlink import HostLink, HostUnreachable
from omnigent.api.runnerlink import RunnerLink, RunnerLinkDown
from omnigent.config import Settings
from omnigent.domain.ownership import owned_host
from omnigent.errors import (
    ControlUnavailable,
    HostOffline,
    RunnerUnavailable,
    Unauthenticated,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)
IDEMPOTENT = ("GET", "HEAD", "PUT", "DELETE")  # safe to send again on a fresh link
# Tests: a replica slow to apply what its long-polls bring (a busy event loop under load)
# cannot be made at will; a server started with this variable (seconds) is one. Read once.
FOLLOW_LAG_ENV = "OMNIGENT_FAULT_FOLLOW_LAG_S"


def _follow_lag() -> float:
    return float(os.environ.get(FOLLOW_LAG_ENV) or 0)


class AppState:
    def __init__(self, settings: Settings, replica: str | None = None) -> None:
        self.settings = settings
        # Who this replica is to the ControlActor's long-polls: a change is acknowledged
        # once every replica has asked past it (omnigent/control/watch.py).
        self.replica = replica or f"replica-{os.getpid()}-{secrets.token_hex(4)}"
        self.control = ray.get_actor("control", namespace=settings.namespace)
        self.hosts: dict[str, dict] = {}
        self.host_nodes: dict[str, str | None] = {}
        self.version = -1
        self._tokens: dict[str, tuple[str, float]] = {}
        self.token_version: int | None = None
        # (user, session id) -> (extras version, moved-in terminal routes, files page)
        self.extras_version: int | None = None
        self._extras: dict[tuple[str, str], tuple[int, dict, dict]] = {}
        self._host_handles: dict[str, tuple[str | None, object]] = {}
        self._links: dict[str, tuple[str | None, HostLink]] = {}
        self._runner_links: dict[str, tuple[str, RunnerLink]] = {}  # sid -> (owner, link)
        self._links_by_runner: dict[str, RunnerLink] = {}
        # host id -> deadlines of requests in flight to its runners, cut short when the
        # host goes offline so that no request waits on a dead machine
        self._in_flight: dict[str, set[asyncio.Timeout]] = {}
        self._lag = _follow_lag()
        self._task: asyncio.Task | None = None
        self._token_task: asyncio.Task | None = None

    async def start(self) -> None:
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60), auto_decompress=False
        )
        self._apply(*await self.control.watch_hosts.remote(-1, 0, self.replica))
        self._task = asyncio.get_running_loop().create_task(self._follow_hosts())
        self._token_task = asyncio.get_running_loop().create_task(self._follow_tokens())
        self._extras_task = asyncio.get_running_loop().create_task(self._follow_extras())

    async def _follow_hosts(self) -> None:
        while True:
            try:
                self._apply(
                    *await self.control.watch_hosts.remote(self.version, 20.0, self.replica)
                )
            except Exception:  # noqa: BLE001 - control restarting or rolled forward: find it again
                log.warning("host table long-poll failed; looking the ControlActor up again")
                await asyncio.sleep(0.2)
                self.control = get_named("control", self.settings.namespace) or self.control

    def _apply(self, version: int, rows: list[dict]) -> None:
        if version < self.version:
            return
        self.version = version
        self.hosts = {r["host"]["id"]: r["host"] for r in rows}
        self.host_nodes = {r["host"]["id"]: r["node_id"] for r in rows}
        now = asyncio.get_running_loop().time()
        for host_id, deadlines in self._in_flight.items():
            if deadlines and self.hosts.get(host_id, {}).get("status") != "online":
                for deadline in deadlines:
                    deadline.reschedule(now)

    # what the resource list adds to the runner's inventory ------------------------
    async def _follow_extras(self) -> None:
        """Drop the cached files and moved-in terminals whenever their version moves."""
        while True:
            try:
                known = -2 if self.extras_version is None else self.extras_version
                version = await self.control.watch_extras.remote(known, 20.0, self.replica)
            except Exception:  # noqa: BLE001 - control restarting: cache nothing meanwhile
                self._extras.clear()
                self.extras_version = None
                await asyncio.sleep(0.2)
                continue
            if version != self.extras_version:
                if self._lag:
                    await asyncio.sleep(self._lag)
                self._extras.clear()
                self.extras_version = version

    async def session_extras(self, user: str, session_id: str) -> tuple[dict, dict]:
        """The session's moved-in terminal routes and its files (first 1,000), from the
        ControlActor, kept until a change anywhere moves their version."""
        version = self.extras_version
        cached = self._extras.get((user, session_id))
        if cached is not None and version is not None and cached[0] == version:
            return cached[1], cached[2]
        routes, files = await asyncio.gather(
            call(
                self.control.terminal_routes.remote(user, session_id),
                timeout=10,
                unreachable=ControlUnavailable,
            ),
            call(
                self.control.list_files.remote(user, session_id, 1000, None, None, "asc"),
                timeout=30,
                unreachable=ControlUnavailable,
            ),
        )
        if version is not None and version == self.extras_version:  # nothing moved meanwhile
            if len(self._extras) > 10_000:
                self._extras.clear()
            self._extras[(user, session_id)] = (version, routes, files)
        return routes, files

    def forget_extras(self, *session_ids: str) -> None:
        """This replica changed them: read them afresh (read-your-writes, before the
        long-poll brings the new version)."""
        for key in [k for k in self._extras if k[1] in session_ids]:
            del self._extras[key]

    # authentication --------------------------------------------------------------
    async def _follow_tokens(self) -> None:
        """Drop the cached tokens whenever the token version moves (a revocation)."""
        while True:
            try:
                version = await self.control.watch_tokens.remote(
                    -2 if self.token_version is None else self.token_version, 20.0, self.replica
                )
            except Exception:  # noqa: BLE001 - control restarting: trust no cached token
                self._tokens.clear()
                self.token_version = None
                await asyncio.sleep(0.2)
                continue
            if version != self.token_version:
                self._tokens.clear()
                self.token_version = version

    async def user_for_token(self, token: str | None) -> str:
        if not token:
            raise Unauthenticated("missing bearer token")
        now = time.monotonic()
        cached = self._tokens.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        version = self.token_version
        user = await self.control.authenticate.remote(token)
        if user is None:
            raise Unauthenticated("invalid bearer token")
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        if version is not None and version == self.token_version:  # no revocation meanwhile
            self._tokens[token] = (user, now + self.settings.token_cache_s)
        return user

    # hosts ----------------------------------------------------------------------
    def owned_host(self, user: str, host_id: str) -> dict:
        return owned_host(self.hosts, user, host_id)

    def online_host_actor(self, host_id: str):
        """The HostActor of an online host (checked with `owned_host` first)."""
        if self.hosts[host_id]["status"] != "online":
            raise HostOffline("the host is offline")
        node_id = self.host_nodes.get(host_id)
        cached = self._host_handles.get(host_id)
        if cached is not None and cached[0] == node_id:
            return cached[1]
        handle = get_named(f"node_{node_id}", self.settings.namespace)
        if handle is None:
            raise HostOffline("the host is offline")
        self._host_handles[host_id] = (node_id, handle)
        return handle

    async def list_host_directory(self, host_id: str, **query) -> bytes:
        """A listing over the host's direct data path (one retry on a stale link)."""
        timeout = self.settings.host_call_timeout_s
        for attempt in (1, 2):
            link = self._links.get(host_id)
            node_id = self.host_nodes.get(host_id)
            if link is None or link[0] != node_id:
                host = self.online_host_actor(host_id)
                path = await call(host.data_path.remote(), timeout=timeout, unreachable=HostOffline)
                link = self._links[host_id] = (node_id, HostLink(path["url"], path["key"]))
            try:
                return await link[1].list_directory(self.http, timeout, **query)
            except HostUnreachable:
                self._links.pop(host_id, None)
                self._host_handles.pop(host_id, None)
                if attempt == 2 or self.hosts.get(host_id, {}).get("status") != "online":
                    raise HostOffline() from None
        raise HostOffline()

    # runners ----------------------------------------------------------------------
    async def runner_link(self, user: str, session_id: str, fresh: bool = False) -> RunnerLink:
        """The data path of the live runner of a session the user owns (cached; a link
        that fails is dropped and looked up again)."""
        cached = self._runner_links.get(session_id)
        if cached is not None and cached[0] == user and not fresh:
            return cached[1]
        timeout = self.settings.host_call_timeout_s
        bound = await call(
            self.control.session_runner.remote(user, session_id),
            timeout=timeout,
            unreachable=ControlUnavailable,
        )

        def gone() -> RunnerUnavailable:
            return RunnerUnavailable("the session's runner is gone")

        path = bound.get("data_path")
        if path is None:  # the ControlActor restarted since the launch: ask the runner
            handle = get_named(bound["runner_id"], self.settings.namespace)
            if handle is None:
                raise gone()
            path = await call(
                handle.data_path.remote(), timeout=timeout, unreachable=gone, timeout_error=gone
            )
        link = RunnerLink(bound["runner_id"], bound["host_id"], path["url"], path["key"])
        if len(self._runner_links) > 10_000:
            self._runner_links.clear()
        self._runner_links[session_id] = (user, link)
        return link

    async def link_for_runner(self, runner_id: str, host_id: str) -> RunnerLink:
        """The data path of a given live runner (for terminals moved between sessions)."""
        cached = self._links_by_runner.get(runner_id)
        if cached is not None:
            return cached

        def gone() -> RunnerUnavailable:
            return RunnerUnavailable("the terminal's runner is gone")

        handle = get_named(runner_id, self.settings.namespace)
        if handle is None:
            raise gone()
        path = await call(
            handle.data_path.remote(),
            timeout=self.settings.host_call_timeout_s,
            unreachable=gone,
            timeout_error=gone,
        )
        link = self._links_by_runner[runner_id] = RunnerLink(
            runner_id, host_id, path["url"], path["key"]
        )
        return link

    async def forward_via(
        self,
        link: RunnerLink,
        method: str,
        raw_path: str,
        query: str = "",
        body: bytes = b"",
        content_type: str | None = None,
        headers: dict | None = None,
        timeout: float = 60,
    ) -> tuple[int, bytes, dict[str, str]]:
        """One request to a given runner (no retry: the caller looked the link up)."""
        try:
            return await self._forward(
                link, method, raw_path, query, body, content_type, timeout, headers
            )
        except RunnerLinkDown:
            self._links_by_runner.pop(link.runner_id, None)
            raise RunnerUnavailable("the terminal's runner is not reachable") from None

    async def forward_to_runner(
        self,
        user: str,
        session_id: str,
        method: str,
        raw_path: str,
        query: str,
        body: bytes,
        content_type: str | None,
        timeout: float,
    ) -> tuple[int, bytes, dict[str, str]]:
        """Send a resource request to the session's runner; one retry on a fresh link
        when the runner surely never saw it, or the method is idempotent."""
        link = await self.runner_link(user, session_id)
        for attempt in (1, 2):
            try:
                return await self._forward(
                    link, method, raw_path, query, body, content_type, timeout
                )
            except RunnerLinkDown as down:
                self._runner_links.pop(session_id, None)
                if attempt == 2 or not (down.unsent or method in IDEMPOTENT):
                    raise RunnerUnavailable("the session's runner is not reachable") from None
                link = await self.runner_link(user, session_id, fresh=True)
        raise AssertionError("unreachable")

    async def _forward(
        self,
        link: RunnerLink,
        method,
        raw_path,
        query,
        body,
        content_type,
        timeout: float,
        headers: dict | None = None,
    ):
        deadlines = self._in_flight.setdefault(link.host_id, set())
        if self.hosts.get(link.host_id, {}).get("status") != "online":
            # no watch on an offline host: a frozen machine must not hold the caller long
            timeout = min(timeout, self.settings.host_call_timeout_s)
        try:
            async with asyncio.timeout(timeout) as deadline:
                deadlines.add(deadline)
                return await link.forward(
                    self.http, method, raw_path, query, body, content_type, headers
                )
        except TimeoutError:
            if self.hosts.get(link.host_id, {}).get("status") != "online":
                raise RunnerUnavailable("the runner's host went offline") from None
            raise UpstreamTimeout("the runner did not answer in time") from None
        finally:
            deadlines.discard(deadline)


def bearer(request_or_ws) -> str | None:
    header = request_or_ws.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


# Async on purpose: FastAPI runs plain `def` dependencies in a thread pool (a hop per call).
async def state(request: Request) -> AppState:
    return request.app.state.omnigent


async def current_user(request: Request) -> str:
    """Set by `AuthMiddleware` before the route runs."""
    return request.state.user
