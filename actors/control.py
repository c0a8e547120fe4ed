"""ControlActor: the server's single source of truth, on the server's own node.

A thin façade over omnigent.control (the logic, without Ray): it wires the pieces to the
store thread, the clock and Ray, and keeps what needs Ray itself: listing Ray's nodes,
starting HostActors on them, activating SessionActors, and watching live runners. Its
remote methods are the control plane's interface (the API, SessionActors, HostActors and
`omnigent serve` call them).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path

import ray

from actors import options
from actors.calls import UNREACHABLE, call, get_named, unwrap
from actors.host import RemoteHost
from actors.session import RemoteSession
from omnigent.config import Settings
from omnigent.control.db import StoreThread
from omnigent.control.files import Files
from omnigent.control.hosts import Hosts
from omnigent.control.runners import Runners
from omnigent.control.sessions import LIVE, Sessions, public_session
from omnigent.control.tokens import Tokens
from omnigent.control.watch import Version
from omnigent.credentials import server_secret
from omnigent.errors import HostOffline, OmnigentError, UpstreamTimeout
from omnigent.store import Store

log = logging.getLogger(__name__)


class ControlActor:
    def __init__(self, settings: dict) -> None:
        self.settings = Settings(**settings)
        self.ns = self.settings.namespace
        self.node_id = ray.get_runtime_context().get_node_id()
        self.code_version = self.settings.code_version
        self.db = StoreThread(Store(self.settings.db_path))
        clock = time.time
        self.tokens = Tokens(self.db)
        # Moves on every change to a session's files or moved-in terminals: an API replica
        # keeps what `GET …/resources` adds to the runner's inventory until it moves.
        self.extras = Version()
        self.hosts = Hosts(
            self.db,
            clock,
            self.node_id,
            self.settings.admin_user,
            server_secret(Path(self.settings.state_dir)),
        )
        self.sessions = Sessions(self.db, clock)
        self.files = Files(self.db, self.sessions, clock, self.settings.files_dir)
        self.runners = Runners(self.db, self.sessions, clock, self.hosts.count)
        self.session_actors: dict[str, list] = {}  # sid -> [handle, last_used, in_flight]
        # runner id -> its data path (url, key), told by the launch; kept in memory only
        self.data_paths: dict[str, dict] = {}
        self._started = False

    # lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Re-attach to runners that outlived a restart; start the monitor. Idempotent."""
        if self._started:
            return
        self._started = True
        await self.hosts.load()
        await self.tokens.refresh()
        for runner in await self.runners.live():
            handle = get_named(runner["runner_id"], self.ns)
            if handle is None:
                await self.runners.ended(runner["runner_id"], "runner_failed", counted=False)
            else:
                self.runners.reattached(runner)
                asyncio.get_running_loop().create_task(self._watch_runner(runner, handle))
        await self._check_nodes()
        asyncio.get_running_loop().create_task(self._monitor())

    async def shutdown(self) -> None:
        """Stop every live runner (the server is going away)."""
        for runner in await self.runners.live():
            handle = get_named(runner["runner_id"], self.ns)
            if handle is not None:
                try:
                    await asyncio.wait_for(handle.stop.remote(), 3)
                except Exception:  # noqa: BLE001 - it is marked exited regardless
                    pass
            await self.runners.ended(runner["runner_id"], "runner_exited")

    async def version(self) -> str:
        return self.code_version

    # users and tokens -------------------------------------------------------------
    async def authenticate(self, token: str) -> str | None:
        return await self.tokens.authenticate(token)

    async def create_token(self, user: str) -> str:
        return await self.tokens.create(user)

    async def list_tokens(self, user: str | None = None) -> list[dict]:
        return await self.tokens.list(user)

    async def revoke_token(self, token_id: str) -> dict:
        return await self.tokens.revoke(token_id)

    async def watch_extras(
        self, known_version: int, wait_s: float = 20.0, follower: str | None = None
    ) -> int:
        """Long-poll: the version of sessions' files and moved-in terminals once it differs
        from `known_version` (`follower`: the API replica asking; see watch.py)."""
        return await self.extras.wait_past(known_version, wait_s, follower)

    async def watch_tokens(
        self, known_version: int, wait_s: float = 20.0, follower: str | None = None
    ) -> int:
        """Long-poll: the token version once it differs from `known_version` (it moves
        on every revocation: an API replica then drops the tokens it has cached)."""
        return await self.tokens.watch(known_version, wait_s, follower)

    # hosts ----------------------------------------------------------------------
    async def own_host(self, timeout: float = 60) -> dict:
        """The host of the server's own node, once it is online."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            host = self.hosts.own_online()
            if host is not None:
                return host
            await asyncio.sleep(0.05)
        raise HostOffline("the server's own machine did not come online as a host")

    async def cluster_info(self, user: str) -> dict:
        """What a machine needs to become `user`'s host (the Ray token not included: only
        the cluster's admin hands that out, see README "Enrolling more machines")."""
        return {
            "ray_address": ray.get_runtime_context().gcs_address,
            "namespace": self.ns,
            "join_key": self.hosts.join_key(user),
        }

    async def watch_hosts(
        self, known_version: int, wait_s: float = 20.0, follower: str | None = None
    ) -> tuple[int, list]:
        """Long-poll: the host table once it differs from `known_version`."""
        return await self.hosts.watch(known_version, wait_s, follower)

    async def _published(self) -> None:
        """Until every API replica has what a change just made (the host table, its
        files and moved-in terminals): the caller's next request may reach any of them."""
        await asyncio.gather(self.hosts.version.settled(), self.extras.settled())

    async def _monitor(self) -> None:
        """Twice a second: enroll new nodes, notice dead ones, follow revocations made in
        the store directly; let idle sessions go."""
        while True:
            try:
                await asyncio.sleep(0.5)
                await self._check_nodes()
                await self.tokens.refresh()
                self._let_idle_sessions_go()
            except Exception:  # a monitor logs and goes on
                log.exception("monitor pass failed")

    async def _check_nodes(self) -> None:
        nodes = await asyncio.to_thread(ray.nodes)
        alive = {n["NodeID"]: n["NodeManagerAddress"] for n in nodes if n["Alive"]}
        for node_id, node_ip in await self.hosts.nodes_alive(alive):
            asyncio.get_running_loop().create_task(self._enroll_logged(node_id, node_ip))

    async def _enroll_logged(self, node_id: str, node_ip: str) -> None:
        try:
            await self._enroll(node_id, node_ip)
        except Exception:
            log.exception("enrolling node %s (%s) failed", node_id, node_ip)
            self.hosts.enroll_failed(node_id)

    async def _enroll(self, node_id: str, node_ip: str) -> None:
        """Start a HostActor on a newly seen node; it says who the machine is, and the
        node becomes a host if it may be one (else the actor goes)."""
        actor = await self._host_actor(node_id)
        died = lambda: HostOffline("the node died while enrolling")  # noqa: E731
        about = (await call(actor.ready.remote(), timeout=60, unreachable=died))["about"]
        owner = self.hosts.owner_for(node_id, about)
        if owner is None:
            ray.kill(actor)
            return
        host = await self.hosts.record(owner, node_id, node_ip, about)
        await call(actor.adopt.remote(host["id"], owner), timeout=30, unreachable=died)
        self.hosts.ready(host, node_id)

    async def _host_actor(self, node_id: str):
        """The node's HostActor, of this code version (one left by a server of another
        version is replaced: a server that rolled forward must not run yesterday's code)."""
        name = f"node_{node_id}"
        existing = get_named(name, self.ns)
        if existing is not None:
            try:
                ready = await asyncio.wait_for(existing.ready.remote(), 5)
                if ready.get("version") == self.code_version:
                    return existing
            except Exception:  # noqa: BLE001 - an actor that does not answer is replaced
                pass
            ray.kill(existing)
            for _ in range(50):  # the name is freed once the old actor is gone
                if get_named(name, self.ns) is None:
                    break
                await asyncio.sleep(0.1)
        return RemoteHost.options(**options.host_options(self.ns, node_id)).remote(
            self.ns,
            self.code_version,
            self.settings.runner_pool_low,
            self.settings.runner_pool_high,
        )

    # sessions ---------------------------------------------------------------------
    async def create_session(self, user: str, body: dict) -> dict:
        if body.get("host_id"):
            self.hosts.owned(user, body["host_id"])
        session = await self.sessions.create(user, body)
        if not body.get("host_id"):
            return public_session(session)  # as stored: no second trip to the store
        try:
            await self.launch_runner(
                user, body["host_id"], session["id"], body["workspace"], body.get("git")
            )
        except BaseException:
            await self.sessions.remove(session["id"])
            raise
        return await self.sessions.get(user, session["id"])

    async def get_session(self, user: str, session_id: str) -> dict:
        return await self.sessions.get(user, session_id)

    async def list_sessions(
        self, user: str, limit: int, after: str | None, before: str | None, order: str
    ) -> dict:
        return await self.sessions.list(user, limit, after, before, order)

    async def delete_session(self, user: str, session_id: str) -> dict:
        session = await self.sessions.owned_or_none(user, session_id)
        if session is not None:
            if session["runner_id"] and session["status"] in LIVE:
                await self._stop_runner(session_id, session["runner_id"])
            await self.sessions.remove(session_id)
            await self._forget_baseline(session)
            await self.files.remove_all(session_id)
            self.extras.bump()
            entry = self.session_actors.pop(session_id, None)
            if entry is not None:
                ray.kill(entry[0])
            await self._published()
        return {"id": session_id, "object": "session.deleted", "deleted": True}

    async def _stop_runner(self, session_id: str, runner_id: str) -> None:
        """Ask the runner to stop (one call, ~ms); one that does not answer is left to the
        session's actor, which makes sure it is gone (killed) before the delete returns."""
        handle = get_named(runner_id, self.ns)
        if handle is None:
            return
        try:
            await call(
                handle.stop.remote(),
                timeout=self.settings.host_call_timeout_s,
                unreachable=lambda: HostOffline("runner unreachable"),
            )
        except Exception:  # noqa: BLE001 - unreachable or stuck: it must go all the same
            await self._with_session_actor(
                session_id, lambda a: a.stop_runner.remote(runner_id, ask=False)
            )

    async def _forget_baseline(self, session: dict) -> None:
        """The session's host drops its change baseline (its runner stopped first). Best
        effort: a host that is offline, or that ran an earlier runner of the session,
        removes it at its next sweep (HostActor.sweep_baselines, `sessions_missing`)."""
        if not session.get("host_id"):
            return
        try:
            node_id = self.hosts.online_node(session["owner"], session["host_id"])
            host = get_named(f"node_{node_id}", self.ns)
            if host is not None:
                await asyncio.wait_for(
                    host.forget_baseline.remote(session["id"]), self.settings.host_call_timeout_s
                )
        except Exception:  # noqa: BLE001 - offline, gone or slow: the sweep removes it
            log.info("baseline of session %s left to its host's sweep", session["id"])

    async def sessions_missing(self, session_ids: list[str]) -> list[str]:
        """Which of these sessions no longer exist (asked by a host's baseline sweep)."""
        return await self.sessions.missing(session_ids)

    async def session_terminals(self, session_id: str) -> dict:
        """The terminals the session's agent spec declares (asked by its runner)."""
        return await self.sessions.terminals(session_id)

    async def terminal_routes(self, user: str, session_id: str) -> dict:
        return await self.sessions.terminal_routes(user, session_id)

    async def terminal_moved(
        self, source: str, target: str, terminal_id: str, runner_id: str
    ) -> None:
        await self.sessions.terminal_moved(source, target, terminal_id, runner_id)
        self.extras.bump()
        await self._published()

    async def forget_terminal(self, session_id: str, terminal_id: str) -> None:
        await self.sessions.forget_terminal(session_id, terminal_id)
        self.extras.bump()
        await self._published()

    # files ------------------------------------------------------------------------
    async def add_file(self, user: str, session_id: str, staged: str, meta: dict) -> dict:
        """Take a fully received upload (a staged file on this machine) into the session."""
        try:
            return await self.files.add(user, session_id, staged, meta)
        finally:
            self.extras.bump()
            await self._published()

    async def list_files(
        self,
        user: str,
        session_id: str,
        limit: int,
        after: str | None,
        before: str | None,
        order: str,
    ) -> dict:
        return await self.files.list(user, session_id, limit, after, before, order)

    async def get_file(self, user: str, session_id: str, file_id: str) -> dict:
        """The file's resource, and where its bytes are (for the API on this node)."""
        return await self.files.get(user, session_id, file_id)

    async def delete_file(self, user: str, session_id: str, file_id: str) -> dict:
        try:
            return await self.files.delete(user, session_id, file_id)
        finally:
            self.extras.bump()
            await self._published()

    async def file_chunks(self, session_id: str, file_id: str, chunk: int = 4 * 2**20):
        """The bytes of a session's file, streamed to a runner on another node."""
        async for data in self.files.chunks(session_id, file_id, chunk):
            yield data

    # runners ----------------------------------------------------------------------
    async def launch_runner(
        self, user: str, host_id: str, session_id: str, workspace: str, git: dict | None
    ) -> dict:
        """Bind a runner to the session (compare-and-set), have the host give it the
        workspace, and wait for its acknowledgement with the binding token. Any failure
        rolls the binding back before it is re-raised. Done here, not by the session's
        actor: a launch then costs a few store writes and two calls to the host."""
        self.hosts.owned(user, host_id)
        await self.sessions.owned(user, session_id)
        node_id = self.hosts.online_node(user, host_id)
        host = get_named(f"node_{node_id}", self.ns)  # the HostActor of the host's node
        if host is None:
            raise HostOffline("the host is offline")
        went_offline = lambda: HostOffline("the host went offline during the launch")  # noqa: E731
        runner_id = await call(
            host.reserve_runner.remote(),
            timeout=self.settings.host_call_timeout_s,
            unreachable=went_offline,
        )
        binding_token = secrets.token_urlsafe(24)
        branch = (git or {}).get("branch_name")
        fields = {"host_id": host_id, "workspace": workspace, "git_branch": branch}
        try:
            await self.runners.bind(session_id, runner_id, binding_token, fields)
        except BaseException:
            host.release_runner.remote(runner_id)  # the pooled runner goes back
            raise
        try:
            info = await call(
                host.launch_runner.remote(
                    runner_id,
                    session_id,
                    workspace,
                    git,
                    binding_token,
                    self.settings.runner_settings(),
                ),
                timeout=self.settings.launch_timeout_s,
                unreachable=went_offline,
                timeout_error=lambda: UpstreamTimeout("the host did not start the runner in time"),
            )
        except BaseException as exc:
            if isinstance(exc, (UpstreamTimeout, HostOffline)):
                host.abort_launch.remote(runner_id)  # it may still be starting one: stop it
            await self.runners.unbind(session_id, runner_id)
            if isinstance(exc, Exception):
                await self.sessions.owned(user, session_id)  # deleted meanwhile: 404
            raise
        data_path = info.pop("data_path", None)
        try:
            runner = await self.runners.started(session_id, info)
        except BaseException:
            host.abort_launch.remote(runner_id)  # the session went (deleted) meanwhile
            raise
        if data_path is not None:
            self.data_paths[runner_id] = data_path
        handle = get_named(runner_id, self.ns)
        if handle is not None:
            asyncio.get_running_loop().create_task(self._watch_runner(runner, handle))
        await self._published()  # the host's runner count
        return {"runner_id": runner_id, "status": "launching"}

    async def session_runner(self, user: str, session_id: str) -> dict:
        """The live runner bound to a session the caller owns, for its resource routes,
        with its data path when known here (saves the API two calls)."""
        bound = await self.runners.of_session(user, session_id)
        data_path = self.data_paths.get(bound["runner_id"])
        return bound if data_path is None else {**bound, "data_path": data_path}

    async def get_runner(self, user: str, runner_id: str) -> dict:
        return await self.runners.get(user, runner_id)

    async def _watch_runner(self, runner: dict, handle) -> None:
        try:
            status = await handle.wait_exit.remote()
        except Exception:  # noqa: BLE001 - unreachable (UNREACHABLE) or broken: it failed
            status = "runner_failed"
        self.data_paths.pop(runner["runner_id"], None)
        await self.runners.ended(runner["runner_id"], status)

    # session actors ---------------------------------------------------------------
    async def _with_session_actor(self, session_id: str, method):
        """Call a SessionActor (activated on use). One retry if it was let go meanwhile."""
        for attempt in (1, 2):
            entry = self.session_actors.get(session_id)
            if entry is None:
                handle = RemoteSession.options(
                    **options.session_options(self.ns, session_id, self.node_id)
                ).remote(session_id, self.settings.to_dict())
                entry = self.session_actors[session_id] = [handle, time.monotonic(), 0]
            entry[2] += 1
            try:
                return await method(entry[0])
            except UNREACHABLE:
                self.session_actors.pop(session_id, None)
                if attempt == 2:
                    raise
            except Exception as exc:
                cause = unwrap(exc)
                if isinstance(cause, OmnigentError):
                    raise cause from None
                raise
            finally:
                entry[1] = time.monotonic()
                entry[2] -= 1

    def _let_idle_sessions_go(self) -> None:
        now = time.monotonic()
        for sid, (handle, last_used, in_flight) in list(self.session_actors.items()):
            if in_flight == 0 and now - last_used > self.settings.session_idle_s:
                del self.session_actors[sid]
                ray.kill(handle)


RemoteControl = ray.remote(ControlActor)
