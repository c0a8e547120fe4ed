"""The file download response (omnigent/api/routes/files.py `_Download`) overrides two
private Starlette hooks (`FileResponse._open_file`, `_parse_range_header`); pyproject pins
Starlette to the range they were checked against, and these tests fail if a Starlette
release changes them: Range, malformed Range, unsatisfiable Range, and reads through our
own thread pool."""

from __future__ import annotations

import inspect
import threading

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import FileResponse

from omnigent.api.routes import files

DATA = bytes(range(256)) * 8192  # 2 MiB: more than one 1 MiB chunk


@pytest.fixture
def client(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(DATA)
    app = FastAPI()

    @app.get("/f")
    async def get():
        return files._Download(
            str(path), size=len(DATA), media_type="application/x-thing", headers={"etag": '"e"'}
        )

    with TestClient(app) as c:
        yield c


def test_the_private_hooks_are_still_there():
    assert inspect.isasyncgenfunction(inspect.unwrap(FileResponse._open_file))
    assert FileResponse._parse_range_header("bytes=0-9", 100) == [(0, 10)]


def test_whole_file_with_its_own_content_type(client):
    r = client.get("/f")
    assert r.status_code == 200 and r.content == DATA
    assert r.headers["content-type"] == "application/x-thing"


def test_a_range(client):
    r = client.get("/f", headers={"range": "bytes=1048570-1048585"})
    assert r.status_code == 206
    assert r.content == DATA[1048570:1048586]
    assert r.headers["content-range"] == f"bytes 1048570-1048585/{len(DATA)}"


def test_a_malformed_range_sends_the_whole_file(client):
    r = client.get("/f", headers={"range": "bytes=abc"})
    assert r.status_code == 200 and r.content == DATA


def test_an_unsatisfiable_range_is_416_with_the_error_body(client):
    r = client.get("/f", headers={"range": f"bytes={len(DATA) + 10}-"})
    assert r.status_code == 416
    assert r.json()["error"]["code"] == "range_not_satisfiable"
    assert r.headers["content-range"] == f"bytes */{len(DATA)}"


def test_reads_go_through_our_pool(client, monkeypatch):
    names: list[str] = []
    original = files._READS.submit

    def submit(fn, *a, **kw):
        def named(*a2, **kw2):
            names.append(threading.current_thread().name)
            return fn(*a2, **kw2)

        return original(named, *a, **kw)

    monkeypatch.setattr(files._READS, "submit", submit)
    assert client.get("/f").content == DATA
    assert names and all(n.startswith("download") for n in names)
