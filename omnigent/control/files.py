"""A session's files: uploads taken in (metadata in the store, bytes under `files_dir`),
listed, read, deleted, and streamed to runners elsewhere."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable

from omnigent.control.db import StoreThread
from omnigent.control.sessions import Sessions
from omnigent.domain.files import file_resource
from omnigent.domain.pagination import list_envelope, paginate_by_key
from omnigent.errors import FileNotFound
from omnigent.ids import new_id
from omnigent.store import Store


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _take(staged: str, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.replace(staged, path)


class Files:
    def __init__(
        self, db: StoreThread, sessions: Sessions, clock: Callable[[], float], files_dir: str
    ) -> None:
        self.db = db
        self.sessions = sessions
        self.clock = clock
        self.files_dir = files_dir

    def path(self, session_id: str, file_id: str) -> str:
        return os.path.join(self.files_dir, session_id, file_id)

    async def add(self, user: str, session_id: str, staged: str, meta: dict) -> dict:
        """Take a fully received upload (a staged file on this machine) into the session
        (the staged file is gone either way)."""
        try:
            await self.sessions.owned(user, session_id)
            meta = {
                **meta,
                "id": new_id("file"),
                "session_id": session_id,
                "created_at": int(self.clock()),
            }
            await asyncio.to_thread(_take, staged, self.path(session_id, meta["id"]))
        except BaseException:
            _unlink(staged)
            raise
        await self.db(self.db.store.put_file, meta)
        return file_resource(meta)

    async def _meta(self, session_id: str, file_id: str) -> dict:
        meta = await self.db.read(Store.get_file, file_id)
        if meta is None or meta["session_id"] != session_id:
            raise FileNotFound(f"file not found: {file_id}")
        return meta

    async def _owned(self, user: str, session_id: str, file_id: str) -> dict:
        await self.sessions.owned(user, session_id)
        return await self._meta(session_id, file_id)

    async def list(
        self,
        user: str,
        session_id: str,
        limit: int,
        after: str | None,
        before: str | None,
        order: str,
    ) -> dict:
        await self.sessions.owned(user, session_id)
        files = await self.db.read(Store.files_of, session_id)
        page = paginate_by_key(
            files,
            key=lambda f: f["id"],
            limit=limit,
            after=after,
            before=before,
            descending=order == "desc",
        )
        return list_envelope([file_resource(f) for f in page.items], page.has_more)

    async def get(self, user: str, session_id: str, file_id: str) -> dict:
        """The file's resource, and where its bytes are (for the API on this node)."""
        meta = await self._owned(user, session_id, file_id)
        return {"resource": file_resource(meta), "path": self.path(session_id, file_id)}

    async def delete(self, user: str, session_id: str, file_id: str) -> dict:
        await self._owned(user, session_id, file_id)
        await self.db(self.db.store.delete_file, file_id)
        _unlink(self.path(session_id, file_id))
        return {"id": file_id, "object": "session.resource.deleted", "deleted": True}

    async def remove_all(self, session_id: str) -> None:
        """Every file of a deleted session."""
        await self.db(self.db.store.delete_files_of, session_id)
        await asyncio.to_thread(
            shutil.rmtree, os.path.join(self.files_dir, session_id), ignore_errors=True
        )

    async def chunks(
        self, session_id: str, file_id: str, chunk: int = 4 * 2**20
    ) -> AsyncIterator[bytes]:
        """The bytes of a session's file, in chunks."""
        await self._meta(session_id, file_id)
        with open(self.path(session_id, file_id), "rb") as f:
            while data := await asyncio.to_thread(f.read, chunk):
                yield data
