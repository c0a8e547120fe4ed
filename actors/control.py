"""ControlActor: the server's single source of truth, on the server's own node.

It owns the store (users, tokens, hosts, sessions, runners), enrolls the Ray nodes that
join as hosts and knows which are online (node alive, HostActor ready), watches every
live runner, and
publishes the host table to the API replicas by long-poll (`watch_hosts`), so that
reading hosts costs the API no actor call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

import ray

from actors import options
from actors.calls import UNREACHABLE, call, get_named
from omnigent.config import Settings
from omnigent.credentials import server_secret
from omnigent.domain.enrollment import host_id_for, join_key, join_key_owner
from omnigent.domain.files import file_resource
from omnigent.domain.ownership import owned_host
from omnigent.domain.pagination import list_envelope, paginate_by_key
from omnigent.errors import (
    AlreadyBound,
    FileNotFound,
    HostOffline,
    InvalidRequest,
    OmnigentError,
    RunnerNotBound,
    RunnerNotFound,
    RunnerUnavailable,
    SessionNotFound,
)
from omnigent.ids import new_id, new_token
from omnigent.store import Store

log = logging.getLogger(__name__)
LIVE = ("launching", "running")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ControlActor:
    def __init__(self, settings: dict) -> None:
        self.settings = Settings(**settings)
        self.ns = self.settings.namespace
        self.node_id = ray.get_runtime_context().get_node_id()
        self.store = Store(self.settings.db_path)
        self.secret = server_secret(Path(self.settings.state_dir))
        self.code_version = self.settings.code_version
        self.hosts: dict[str, dict] = {h["id"]: h for h in self.store.all_hosts()}
        self.alive_nodes: dict[str, str] = {}  # node id -> its IP, as of the last check
        self.seen_nodes: set[str] = set()      # nodes probed (or being probed) already
        self.ready_hosts: set[str] = set()     # hosts whose HostActor answered on their node
        self._db_lock = asyncio.Lock()
        self.version = 0
        self._changed = asyncio.Event()
        self.runner_counts: dict[str, int] = {}
        self.session_actors: dict[str, list] = {}  # sid -> [handle, last_used, in_flight]
        self._started = False

    # lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Re-attach to runners that outlived a restart; start the monitor. Idempotent."""
        if self._started:
            return
        self._started = True
        for runner in self.store.live_runners():
            handle = get_named(runner["runner_id"], self.ns)
            if handle is None:
                self._runner_ended(runner["runner_id"], "runner_failed")
            else:
                self._count(runner["host_id"], +1)
                asyncio.get_running_loop().create_task(self._watch_runner(runner, handle))
        await self._check_nodes()
        asyncio.get_running_loop().create_task(self._monitor())

    async def shutdown(self) -> None:
        """Stop every live runner (the server is going away) and close the store."""
        for runner in self.store.live_runners():
            handle = get_named(runner["runner_id"], self.ns)
            if handle is not None:
                try:
                    await asyncio.wait_for(handle.stop.remote(), 3)
                except Exception:
                    pass
            self._runner_ended(runner["runner_id"], "runner_exited")

    # users and tokens -------------------------------------------------------------
    async def authenticate(self, token: str) -> str | None:
        return self.store.user_for_token(token)

    async def create_token(self, user: str) -> str:
        if not user or not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InvalidRequest("user names are letters, digits, '-', '_' and '.'")
        token = new_token()
        self.store.add_token(user, token)
        return token

    async def version(self) -> str:
        return self.code_version

    async def own_host(self, timeout: float = 60) -> dict:
        """The host of the server's own node, once it is online."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for host in self.hosts.values():
                if host["info"].get("node_id") == self.node_id and \
                        self._status(host["id"]) == "online":
                    return self._public_host(host)
            await asyncio.sleep(0.05)
        raise HostOffline("the server's own machine did not come online as a host")

    async def cluster_info(self, user: str) -> dict:
        """What a machine needs to become `user`'s host (the Ray token not included: only
        the cluster's admin hands that out, see README "Enrolling more machines")."""
        return {"ray_address": ray.get_runtime_context().gcs_address, "namespace": self.ns,
                "join_key": join_key(self.secret, user)}

    # hosts ----------------------------------------------------------------------
    # A host is an enrolled Ray node: the server's own node (the admin's), or a node
    # whose `ray start` carried a join key (omnigent.domain.enrollment). It is online
    # while its node is alive and its HostActor answers.
    def _public_host(self, host: dict) -> dict:
        info = host["info"]
        return {
            "id": host["id"], "name": host["name"], "status": self._status(host["id"]),
            "platform": host["platform"], "registered_at": host["registered_at"],
            "runner_count": self.runner_counts.get(host["id"], 0),
            "owner": host["owner"], "last_seen_at": self._last_seen(host),
            "cpus": info.get("cpus"), "memory_bytes": info.get("memory_bytes"),
        }

    def _status(self, host_id: str) -> str:
        node_id = self.hosts[host_id]["info"].get("node_id")
        live = host_id in self.ready_hosts and node_id in self.alive_nodes
        return "online" if live else "offline"

    def _last_seen(self, host: dict) -> int | None:
        return int(time.time()) if self._status(host["id"]) == "online" else host["last_seen_at"]

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def watch_hosts(self, known_version: int, wait_s: float = 20.0) -> tuple[int, list]:
        """Long-poll: the host table once it differs from `known_version`."""
        if known_version == self.version:
            try:
                await asyncio.wait_for(self._changed.wait(), wait_s)
            except asyncio.TimeoutError:
                pass
        rows = [
            {"host": self._public_host(h), "node_id": h["info"].get("node_id")}
            for h in self.hosts.values()
        ]
        return self.version, rows

    async def _enroll(self, node_id: str, node_ip: str) -> None:
        """Start a HostActor on a newly seen node; it says who the machine is, and the
        node becomes a host if it may be one (else the actor goes)."""
        actor = await self._host_actor(node_id)
        about = (await call(actor.ready.remote(), timeout=60,
                            unreachable=lambda: HostOffline("the node died while enrolling")))["about"]
        if node_id == self.node_id:
            owner: str | None = self.settings.admin_user
        else:
            owner = join_key_owner(self.secret, about["join_key"])
        if owner is None:
            if about["join_key"]:
                log.warning("node %s (%s) joined with a join key this server did not issue; "
                            "it is not a host", node_id, node_ip)
            ray.kill(actor)
            return
        fields = {
            "name": about["name"], "platform": about["platform"],
            "info": {"node_id": node_id, "node_ip": node_ip, "home": about["home"],
                     "cpus": about["cpus"], "memory_bytes": about["memory_bytes"]},
        }
        host_id = host_id_for(owner, about["machine_id"])
        host = await self._db(self.store.upsert_host, owner, about["machine_id"], host_id, fields)
        await call(actor.adopt.remote(host["id"], owner), timeout=30,
                   unreachable=lambda: HostOffline("the node died while enrolling"))
        self.hosts[host["id"]] = host
        if node_id in self.alive_nodes:
            self.ready_hosts.add(host["id"])
            log.info("node %s (%s) is host %s of %s", node_id, node_ip, host["id"], owner)
        self._bump()

    async def _host_actor(self, node_id: str):
        """The node's HostActor, of this code version (one left by a server of another
        version is replaced: a server that rolled forward must not run yesterday's code)."""
        from actors.remote import RemoteHost

        name = f"node_{node_id}"
        existing = get_named(name, self.ns)
        if existing is not None:
            try:
                ready = await asyncio.wait_for(existing.ready.remote(), 5)
                if ready.get("version") == self.code_version:
                    return existing
            except Exception:
                pass
            ray.kill(existing)
            for _ in range(50):  # the name is freed once the old actor is gone
                if get_named(name, self.ns) is None:
                    break
                await asyncio.sleep(0.1)
        return RemoteHost.options(**options.host_options(self.ns, node_id)).remote(
            self.ns, self.code_version)

    def _owned_host(self, user: str, host_id: str) -> dict:
        return owned_host(self.hosts, user, host_id)

    async def _monitor(self) -> None:
        """Twice a second: enroll new nodes, notice dead ones; let idle sessions go."""
        while True:
            try:
                await asyncio.sleep(0.5)
                await self._check_nodes()
                self._let_idle_sessions_go()
            except Exception:  # a monitor logs and goes on
                log.exception("monitor pass failed")

    async def _check_nodes(self) -> None:
        nodes = await asyncio.to_thread(ray.nodes)
        alive = {n["NodeID"]: n["NodeManagerAddress"] for n in nodes if n["Alive"]}
        gone = set(self.alive_nodes) - set(alive)
        self.alive_nodes = alive
        for node_id, node_ip in alive.items():
            if node_id not in self.seen_nodes:
                self.seen_nodes.add(node_id)
                asyncio.get_running_loop().create_task(self._enroll_logged(node_id, node_ip))
        if gone:
            now = int(time.time())
            for host in self.hosts.values():
                if host["info"].get("node_id") in gone and host["id"] in self.ready_hosts:
                    self.ready_hosts.discard(host["id"])
                    host["last_seen_at"] = now
                    await self._db(self.store.touch_host, host["id"], now)
            self._bump()

    async def _enroll_logged(self, node_id: str, node_ip: str) -> None:
        try:
            await self._enroll(node_id, node_ip)
        except Exception:
            log.exception("enrolling node %s (%s) failed", node_id, node_ip)
            self.seen_nodes.discard(node_id)  # try again on a later pass

    async def _db(self, method, *args):
        """A store call off the event loop (SQLite with fsync blocks)."""
        async with self._db_lock:
            return await asyncio.to_thread(method, *args)

    # sessions ---------------------------------------------------------------------
    async def create_session(self, user: str, body: dict) -> dict:
        if body.get("host_id"):
            self._owned_host(user, body["host_id"])
        session = {
            "id": new_id("conv"), "object": "session", "title": body.get("title"),
            "owner": user, "agent": body["agent"], "host_id": None, "runner_id": None,
            "workspace": None, "git_branch": None, "status": "idle",
            "created_at": int(time.time()),
        }
        self.store.put_session(session)
        if body.get("host_id"):
            try:
                await self.launch_runner(
                    user, body["host_id"], session["id"], body["workspace"], body.get("git"))
            except BaseException:
                self.store.delete_session(session["id"])
                raise
        return self._public_session(self.store.get_session(session["id"]))

    def _owned_session(self, user: str, session_id: str) -> dict:
        session = self.store.get_session(session_id)
        if session is None or session["owner"] != user:
            raise SessionNotFound(f"session not found: {session_id}")
        return session

    @staticmethod
    def _public_session(session: dict) -> dict:
        return {k: v for k, v in session.items() if not k.startswith("_")}

    async def get_session(self, user: str, session_id: str) -> dict:
        return self._public_session(self._owned_session(user, session_id))

    async def list_sessions(self, user: str, limit: int, after: str | None,
                            before: str | None, order: str) -> dict:
        page = paginate_by_key(self.store.sessions_of(user), key=lambda s: s["id"], limit=limit,
                               after=after, before=before, descending=order == "desc")
        return list_envelope([self._public_session(s) for s in page.items], page.has_more)

    async def delete_session(self, user: str, session_id: str) -> dict:
        session = self.store.get_session(session_id)
        if session is not None and session["owner"] == user:
            if session["runner_id"] and session["status"] in LIVE:
                await self._with_session_actor(
                    session_id, lambda a: a.stop_runner.remote(session["runner_id"]))
            self.store.delete_session(session_id)
            self.store.delete_files_of(session_id)
            shutil.rmtree(os.path.join(self.settings.files_dir, session_id), ignore_errors=True)
            entry = self.session_actors.pop(session_id, None)
            if entry is not None:
                ray.kill(entry[0])
        elif session is not None:
            raise SessionNotFound(f"session not found: {session_id}")
        return {"id": session_id, "object": "session.deleted", "deleted": True}

    async def session_terminals(self, session_id: str) -> dict:
        """The terminals the session's agent spec declares (asked by its runner)."""
        session = self.store.get_session(session_id)
        if session is None:
            raise SessionNotFound(f"session not found: {session_id}")
        return (session.get("agent") or {}).get("terminals") or {}

    async def terminal_routes(self, user: str, session_id: str) -> dict:
        """Where a session's terminals run: its own runner (if live) and the runners of
        terminals other sessions handed to it."""
        session = self._owned_session(user, session_id)
        own = None
        if session["runner_id"] and session["status"] == "running":
            own = {"runner_id": session["runner_id"], "host_id": session["host_id"]}
        reason = ("runner_not_bound" if not session["runner_id"]
                  else None if own else "runner_unavailable")
        moved = {}
        for tid, rid in self.store.moves_of(session_id).items():
            runner = self.store.get_runner(rid)
            if runner is not None and runner["status"] in LIVE:
                moved[tid] = {"runner_id": rid, "host_id": runner["host_id"]}
            else:
                self.store.forget_move(session_id, tid)
        return {"own": own, "reason": reason, "moved_in": moved}

    async def terminal_moved(self, source: str, target: str, terminal_id: str,
                             runner_id: str) -> None:
        target_session = self.store.get_session(target) or {}
        home = None if target_session.get("runner_id") == runner_id else runner_id
        self.store.move_terminal(source, target, terminal_id, home)

    async def forget_terminal(self, session_id: str, terminal_id: str) -> None:
        self.store.forget_move(session_id, terminal_id)

    # files ------------------------------------------------------------------------
    def _file_path(self, session_id: str, file_id: str) -> str:
        return os.path.join(self.settings.files_dir, session_id, file_id)

    async def add_file(self, user: str, session_id: str, staged: str, meta: dict) -> dict:
        """Take a fully received upload (a staged file on this machine) into the session."""
        try:
            self._owned_session(user, session_id)
            meta = {**meta, "id": new_id("file"), "session_id": session_id,
                    "created_at": int(time.time())}
            path = self._file_path(session_id, meta["id"])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.replace(staged, path)
        except BaseException:
            _unlink(staged)
            raise
        self.store.put_file(meta)
        return file_resource(meta)

    def _owned_file(self, user: str, session_id: str, file_id: str) -> dict:
        self._owned_session(user, session_id)
        meta = self.store.get_file(file_id)
        if meta is None or meta["session_id"] != session_id:
            raise FileNotFound(f"file not found: {file_id}")
        return meta

    async def list_files(self, user: str, session_id: str, limit: int, after: str | None,
                         before: str | None, order: str) -> dict:
        self._owned_session(user, session_id)
        page = paginate_by_key(self.store.files_of(session_id), key=lambda f: f["id"],
                               limit=limit, after=after, before=before,
                               descending=order == "desc")
        return list_envelope([file_resource(f) for f in page.items], page.has_more)

    async def get_file(self, user: str, session_id: str, file_id: str) -> dict:
        """The file's resource, and where its bytes are (for the API on this node)."""
        meta = self._owned_file(user, session_id, file_id)
        return {"resource": file_resource(meta), "path": self._file_path(session_id, file_id)}

    async def delete_file(self, user: str, session_id: str, file_id: str) -> dict:
        self._owned_file(user, session_id, file_id)
        self.store.delete_file(file_id)
        _unlink(self._file_path(session_id, file_id))
        return {"id": file_id, "object": "session.resource.deleted", "deleted": True}

    async def file_chunks(self, session_id: str, file_id: str, chunk: int = 4 * 2**20):
        """The bytes of a session's file, streamed to a runner on another node."""
        meta = self.store.get_file(file_id)
        if meta is None or meta["session_id"] != session_id:
            raise FileNotFound(f"file not found: {file_id}")
        with open(self._file_path(session_id, file_id), "rb") as f:
            while data := await asyncio.to_thread(f.read, chunk):
                yield data

    # runners ----------------------------------------------------------------------
    async def launch_runner(self, user: str, host_id: str, session_id: str, workspace: str,
                            git: dict | None) -> dict:
        self._owned_host(user, host_id)
        self._owned_session(user, session_id)
        if self._status(host_id) != "online":
            raise HostOffline("the host is offline")
        return await self._with_session_actor(
            session_id, lambda a: a.launch.remote(
                host_id, self.hosts[host_id]["info"]["node_id"], workspace, git))

    async def bind_runner(self, session_id: str, runner_id: str, binding_token: str,
                          fields: dict) -> None:
        fields = {**fields, "_binding": _hash(binding_token)}
        if self.store.bind_runner(session_id, runner_id, fields) is None:
            raise AlreadyBound("the session already has a runner bound")

    async def unbind_runner(self, session_id: str, runner_id: str) -> None:
        self.store.update_session_if_runner(session_id, runner_id, {
            "runner_id": None, "host_id": None, "workspace": None, "git_branch": None,
            "status": "idle", "_binding": None})

    async def runner_started(self, session_id: str, info: dict) -> None:
        """The host acknowledged the launch; the runner presented its binding token."""
        token = info.pop("binding_token")
        session = self.store.get_session(session_id)
        if session is None or session.get("_binding") != _hash(token):
            raise AlreadyBound("the runner's binding token does not match its session")
        runner = {
            "runner_id": info["runner_id"], "session_id": session_id, "owner": session["owner"],
            "host_id": info["host_id"], "status": "running", "started_at": info["started_at"],
            "node_id": info["node_id"], "pid": info["pid"], "cwd": info["cwd"],
        }
        self.store.put_runner(runner)
        self.store.update_session_if_runner(session_id, runner["runner_id"], {
            "status": "running", "workspace": info["workspace"],
            "git_branch": info["git_branch"]})
        self._count(runner["host_id"], +1)
        handle = get_named(runner["runner_id"], self.ns)
        if handle is not None:
            asyncio.get_running_loop().create_task(self._watch_runner(runner, handle))

    async def session_runner(self, user: str, session_id: str) -> dict:
        """The live runner bound to a session the caller owns, for its resource routes."""
        session = self._owned_session(user, session_id)
        if not session["runner_id"]:
            raise RunnerNotBound("the session has no runner bound; launch one first")
        if session["status"] != "running":
            raise RunnerUnavailable(f"the session's runner is not available ({session['status']})")
        return {"runner_id": session["runner_id"], "host_id": session["host_id"]}

    async def get_runner(self, user: str, runner_id: str) -> dict:
        runner = self.store.get_runner(runner_id)
        if runner is None or runner["owner"] != user:
            raise RunnerNotFound(f"runner not found: {runner_id}")
        return {k: runner[k] for k in ("runner_id", "session_id", "host_id", "status",
                                       "started_at", "node_id", "pid", "cwd")}

    async def _watch_runner(self, runner: dict, handle) -> None:
        try:
            status = await handle.wait_exit.remote()
        except UNREACHABLE:
            status = "runner_failed"
        except Exception:
            status = "runner_failed"
        self._runner_ended(runner["runner_id"], status)

    def _runner_ended(self, runner_id: str, status: str) -> None:
        runner = self.store.get_runner(runner_id)
        if runner is None or runner["status"] not in LIVE:
            return
        runner["status"] = status
        self.store.put_runner(runner)
        self.store.update_session_if_runner(runner["session_id"], runner_id, {"status": status})
        self._count(runner["host_id"], -1)

    def _count(self, host_id: str, delta: int) -> None:
        self.runner_counts[host_id] = max(0, self.runner_counts.get(host_id, 0) + delta)
        self._bump()

    # session actors ---------------------------------------------------------------
    async def _with_session_actor(self, session_id: str, method):
        """Call a SessionActor (activated on use). One retry if it was let go meanwhile."""
        for attempt in (1, 2):
            entry = self.session_actors.get(session_id)
            if entry is None:
                from actors.remote import RemoteSession

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
                from actors.calls import unwrap

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
