"""A session's files (omnigent.control.files): taken in, listed, read, streamed, deleted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omnigent.control.files import Files
from omnigent.control.sessions import Sessions
from omnigent.errors import FileNotFound, SessionNotFound
from tests.unit.control_helpers import Clock, run, store_thread


@pytest.fixture
def db(tmp_path):
    db = store_thread(tmp_path)
    yield db
    db.close()


def meta_of(name: str, size: int) -> dict:
    return {"filename": name, "bytes": size, "content_type": "text/plain", "sha256": "0" * 64}


def staged(tmp_path, data: bytes, name="up") -> str:
    path = tmp_path / f"staged-{name}"
    path.write_bytes(data)
    return str(path)


def test_add_list_get_chunks_delete(db, tmp_path):
    async def scenario():
        clock = Clock(500)
        sessions = Sessions(db, clock)
        files = Files(db, sessions, clock, str(tmp_path / "files"))
        s = await sessions.create("alice", {"agent": {"name": "a"}})
        up = staged(tmp_path, b"x" * 10 + b"y" * 5)
        meta = meta_of("a.txt", 15)
        res = await files.add("alice", s["id"], up, meta)
        assert not os.path.exists(up)
        assert res["id"].startswith("file_")
        listed = await files.list("alice", s["id"], 20, None, None, "desc")
        assert [f["id"] for f in listed["data"]] == [res["id"]]
        got = await files.get("alice", s["id"], res["id"])
        assert Path(got["path"]).read_bytes() == b"x" * 10 + b"y" * 5
        chunks = [c async for c in files.chunks(s["id"], res["id"], chunk=10)]
        assert chunks == [b"x" * 10, b"y" * 5]
        with pytest.raises(SessionNotFound):
            await files.get("bob", s["id"], res["id"])
        with pytest.raises(FileNotFound):
            await files.get("alice", s["id"], "file_nope")
        with pytest.raises(FileNotFound):
            [c async for c in files.chunks("conv_other", res["id"])]
        assert (await files.delete("alice", s["id"], res["id"]))["deleted"] is True
        assert not os.path.exists(got["path"])
        with pytest.raises(FileNotFound):
            await files.delete("alice", s["id"], res["id"])

    run(scenario())


def test_a_refused_upload_is_removed_and_remove_all(db, tmp_path):
    async def scenario():
        sessions = Sessions(db, Clock())
        files = Files(db, sessions, Clock(), str(tmp_path / "files"))
        up = staged(tmp_path, b"data")
        with pytest.raises(SessionNotFound):
            await files.add("alice", "conv_nope", up, meta_of("a", 4))
        assert not os.path.exists(up)
        s = await sessions.create("alice", {"agent": {"name": "a"}})
        res = await files.add("alice", s["id"], staged(tmp_path, b"d", "2"), meta_of("b", 1))
        await files.remove_all(s["id"])
        assert not (tmp_path / "files" / s["id"]).exists()
        with pytest.raises(FileNotFound):
            await files.get("alice", s["id"], res["id"])

    run(scenario())
