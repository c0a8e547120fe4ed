"""The environment filesystem: browse, read, write, edit, delete (one shared session on
node A; each test works in a directory of its own under the workspace)."""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

import pytest

from tests.cluster.helpers import env_url, error_code, launched, make_workspace, put_files

MiB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))

FILES = {
    "list/a.txt": "a",
    "list/b.txt": "bb",
    "list/c.txt": "ccc",
    "list/e.txt": "eeeee",
    "list/.hidden": "h",
    "list/d/inner.txt": "i",
    "read/hello.py": "print('hi')\n",
    "read/notes.txt": "héllo wörld ✓\n",
    "read/pic.png": PNG,
    "read/blob": b"\x00\x01\x02\xff" * 10,
    "read/big.txt": b"x" * (5 * MiB),
    "read/big.bin": b"\x00\xfe" * (5 * MiB // 2),
    "read/big-utf8.txt": "✓" * (2 * MiB // 3 + 5),  # 3-byte characters across the cap
    "read/latin1.txt": "café crème\n".encode("latin-1"),
}


class Env:
    def __init__(self, client, sid: str, ws: str) -> None:
        self.client, self.sid, self.ws = client, sid, ws

    def url(self, rest: str = "") -> str:
        return env_url(self.sid, rest)

    def fs(self, rel: str = "") -> str:
        return self.url("/filesystem/" + rel if rel else "/filesystem")

    def get(self, rel: str = "", **params):
        return self.client.get(self.fs(rel), params=params)

    def put(self, rel: str, content: str, **extra):
        return self.client.put(self.fs(rel), json={"content": content, **extra})

    def disk(self, rel: str) -> Path:
        return Path(self.ws, rel)


@pytest.fixture(scope="module")
def env(world):
    ws = make_workspace(world.node_a.home, FILES)
    sid = launched(world.alice, world.host_a, ws)
    yield Env(world.alice, sid, ws)
    world.alice.delete(f"/v1/sessions/{sid}")


def _ids(body: dict) -> list[str]:
    return [e["id"] for e in body["data"]]


LIST_DESC = ["list/e.txt", "list/d", "list/c.txt", "list/b.txt", "list/a.txt", "list/.hidden"]


# browse ---------------------------------------------------------------------------------


def test_listing_envelope_entries_and_default_order(env):
    r = env.get("list")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"object", "data", "first_id", "last_id", "has_more"}
    assert body["object"] == "list" and body["has_more"] is False
    # default order: descending by name; hidden files included; ids are relative paths
    assert _ids(body) == LIST_DESC
    assert body["first_id"] == "list/e.txt" and body["last_id"] == "list/.hidden"
    by_id = {e["id"]: e for e in body["data"]}
    e = by_id["list/c.txt"]
    assert e["object"] == "session.environment.filesystem.entry"
    assert e["name"] == "c.txt" and e["path"] == "list/c.txt" and e["type"] == "file"
    assert e["bytes"] == 3
    assert e["modified_at"] == int(os.stat(env.disk("list/c.txt")).st_mtime)
    d = by_id["list/d"]
    assert d["type"] == "directory" and d["name"] == "d"
    # a subdirectory's entries carry their path from the root
    r = env.get("list/d")
    assert r.status_code == 200 and _ids(r.json()) == ["list/d/inner.txt"]
    assert r.json()["data"][0]["name"] == "inner.txt"


def test_root_listing(env):
    r = env.client.get(env.fs())
    assert r.status_code == 200, r.text
    ids = _ids(r.json())
    assert {"list", "read"} <= set(ids)
    assert all("/" not in i for i in ids)
    assert ids == sorted(ids, reverse=True)
    r2 = env.client.get(env.fs() + "/")  # with a trailing slash: the same listing
    assert r2.status_code == 200 and _ids(r2.json()) == ids


def test_order_limit_and_cursors(env):
    r = env.get("list", order="asc")
    assert r.status_code == 200 and _ids(r.json()) == LIST_DESC[::-1]

    # walk forward two at a time, both orders
    for order, expected in (("desc", LIST_DESC), ("asc", LIST_DESC[::-1])):
        seen, after, pages = [], None, 0
        while True:
            params = {"limit": 2, "order": order, **({"after": after} if after else {})}
            body = env.get("list", **params).json()
            pages += 1
            assert len(body["data"]) <= 2
            seen += _ids(body)
            assert body["first_id"] == body["data"][0]["id"]
            assert body["last_id"] == body["data"][-1]["id"]
            if not body["has_more"]:
                break
            after = body["last_id"]
            assert pages < 10
        assert seen == expected and pages == 3, order

    # before: the items directly preceding the cursor, in the page's order
    body = env.get("list", order="asc", limit=2, before="list/c.txt").json()
    assert _ids(body) == ["list/a.txt", "list/b.txt"] and body["has_more"] is True
    body = env.get("list", order="asc", limit=5, before="list/c.txt").json()
    assert _ids(body) == ["list/.hidden", "list/a.txt", "list/b.txt"]
    assert body["has_more"] is False
    body = env.get("list", limit=2, before="list/b.txt").json()  # desc
    assert _ids(body) == ["list/d", "list/c.txt"] and body["has_more"] is True
    # a cursor naming nothing that exists still works (keyset)
    body = env.get("list", order="asc", after="list/bz").json()
    assert _ids(body) == ["list/c.txt", "list/d", "list/e.txt"]


def test_cursor_survives_a_changing_directory(env):
    put_files(env.ws, {f"pages/f{i:02}": str(i) for i in range(1, 11)})
    body = env.get("pages", order="asc", limit=3).json()
    assert _ids(body) == ["pages/f01", "pages/f02", "pages/f03"] and body["has_more"]
    cursor = body["last_id"]
    # meanwhile: the cursor's item is deleted, files appear before and after it
    os.unlink(env.disk("pages/f03"))
    put_files(env.ws, {"pages/f025": "x", "pages/f035": "y", "pages/f11": "z"})
    body = env.get("pages", order="asc", limit=3, after=cursor).json()
    assert _ids(body) == ["pages/f035", "pages/f04", "pages/f05"] and body["has_more"]
    rest = env.get("pages", order="asc", limit=100, after=body["last_id"]).json()
    assert _ids(rest) == [f"pages/f{i:02}" for i in range(6, 12)] and not rest["has_more"]
    # desc, the same way
    body = env.get("pages", limit=2, after="pages/f035").json()
    assert _ids(body) == ["pages/f025", "pages/f02"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": -1},
        {"limit": "abc"},
        {"order": "sideways"},
        {"order": ""},
    ],
)
def test_bad_listing_parameters_are_422(env, params):
    for rel in ("", "list"):
        r = env.get(rel, **params)
        assert r.status_code == 422, (rel, params, r.text)
        err = r.json()["error"]
        assert err["code"] and isinstance(err["code"], str) and err["message"], r.text


def test_listing_limits_at_the_edges(env):
    assert _ids(env.get("list", limit=1).json()) == ["list/e.txt"]
    body = env.get("list", limit=1000).json()
    assert _ids(body) == LIST_DESC and body["has_more"] is False


# read -----------------------------------------------------------------------------------


def test_read_text_file(env):
    r = env.get("read/hello.py")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "session.environment.filesystem.file_content"
    assert body["path"] == "read/hello.py" and body["bytes"] == 12
    assert body["truncated"] is False and body["encoding"] == "utf-8"
    assert body["content"] == "print('hi')\n"
    assert body["content_type"] in ("text/x-python", "text/x-script.python")
    body = env.get("read/notes.txt").json()
    assert body["content"] == "héllo wörld ✓\n" and body["encoding"] == "utf-8"
    assert body["bytes"] == len("héllo wörld ✓\n".encode())
    assert body["content_type"] == "text/plain"


def test_read_binary_file_is_base64(env):
    body = env.get("read/pic.png").json()
    assert body["encoding"] == "base64" and body["content_type"] == "image/png"
    assert base64.b64decode(body["content"]) == PNG and body["bytes"] == len(PNG)
    body = env.get("read/blob").json()
    assert body["encoding"] == "base64"
    assert body["content_type"] == "application/octet-stream"
    assert base64.b64decode(body["content"]) == b"\x00\x01\x02\xff" * 10


def test_read_large_file_is_truncated_at_1_mib(env):
    body = env.get("read/big.txt").json()
    assert body["truncated"] is True and body["bytes"] == 5 * MiB
    assert body["encoding"] == "utf-8" and len(body["content"]) == MiB
    assert body["content"] == "x" * MiB
    body = env.get("read/big.bin").json()
    assert body["truncated"] is True and body["bytes"] == 5 * MiB
    assert body["encoding"] == "base64"
    assert base64.b64decode(body["content"]) == b"\x00\xfe" * (MiB // 2)


def test_read_cut_inside_a_character_stays_text(env):
    body = env.get("read/big-utf8.txt").json()
    assert body["truncated"] is True and body["bytes"] == 3 * (2 * MiB // 3 + 5)
    assert body["encoding"] == "utf-8", body["encoding"]
    assert set(body["content"]) == {"✓"}
    assert MiB - 3 < len(body["content"].encode()) <= MiB


def test_read_text_that_is_not_utf8_is_base64(env):
    body = env.get("read/latin1.txt").json()
    assert body["encoding"] == "base64"
    assert base64.b64decode(body["content"]) == "café crème\n".encode("latin-1")


def test_read_missing_is_404(env):
    for rel in ("read/nope.txt", "nope/nope.txt", "nope"):
        r = env.get(rel)
        assert r.status_code == 404, (rel, r.text)
        assert error_code(r) == "path_not_found", r.text


def test_path_through_a_file_is_missing_not_an_io_error(env):
    """`read/hello.py/x` names nothing (a file is not a directory): 404 like any missing
    path, not 502/500 (which say the host failed)."""
    rel = "read/hello.py/x"
    results = {
        "GET": env.get(rel),
        "PATCH": env.client.patch(env.fs(rel), json={"old_text": "a", "new_text": "b"}),
        "DELETE": env.client.delete(env.fs(rel)),
    }
    wrong = {m: (r.status_code, r.text) for m, r in results.items() if r.status_code != 404}
    assert not wrong, wrong
    r = env.put(rel, "x")  # cannot be created: a client error, never a server one
    assert 400 <= r.status_code < 500 and error_code(r), r.text
    assert env.disk("read/hello.py").read_text() == "print('hi')\n"


def test_reading_a_fifo_does_not_hang(env):
    os.makedirs(env.disk("fifo"), exist_ok=True)
    os.mkfifo(env.disk("fifo/p"))
    t0 = time.monotonic()
    r = env.get("fifo/p")
    assert time.monotonic() - t0 < 5
    assert r.status_code == 400 and error_code(r) == "not_a_file", r.text
    r = env.get("fifo")
    assert r.status_code == 200 and r.json()["data"][0]["type"] == "other", r.text


def test_unicode_names(env):
    r = env.put("dír/ñ.txt", "ñandú ✓")
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "dír/ñ.txt" and r.json()["created"] is True
    assert env.disk("dír/ñ.txt").read_bytes() == "ñandú ✓".encode()
    put_files(env.ws, {"dír/日本.md": "# 日本\n"})
    body = env.get("dír", order="asc").json()
    assert _ids(body) == ["dír/ñ.txt", "dír/日本.md"]
    assert [e["name"] for e in body["data"]] == ["ñ.txt", "日本.md"]
    body = env.get("dír/日本.md").json()
    assert body["content"] == "# 日本\n" and body["path"] == "dír/日本.md"
    assert env.get("dír/ñ.txt").json()["content"] == "ñandú ✓"


# write ----------------------------------------------------------------------------------


def test_write_creates_parents_then_updates(env):
    r = env.put("w/new/deep/f.txt", "one\n")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "session.environment.filesystem.write_result"
    assert body["created"] is True and body["operation"] == "created"
    assert body["path"] == "w/new/deep/f.txt" and body["bytes_written"] == 4
    assert body["entry"]["type"] == "file" and body["entry"]["bytes"] == 4
    assert env.disk("w/new/deep/f.txt").read_bytes() == b"one\n"
    r = env.put("w/new/deep/f.txt", "two, longer\n")
    assert r.status_code == 200 and r.json()["created"] is False
    assert r.json()["operation"] == "updated" and r.json()["bytes_written"] == 12
    assert env.disk("w/new/deep/f.txt").read_bytes() == b"two, longer\n"
    assert env.get("w/new/deep/f.txt").json()["content"] == "two, longer\n"
    # an empty file is a file
    r = env.put("w/empty", "")
    assert r.status_code == 200 and env.disk("w/empty").read_bytes() == b""
    # nothing but the files themselves was left behind (no temporary files)
    assert sorted(os.listdir(env.disk("w/new/deep"))) == ["f.txt"]


def test_large_write_round_trip(env):
    text = ("0123456789abcdef" * 4096 + "\n") * 48  # ~3 MiB
    r = env.put("w/large.txt", text)
    assert r.status_code == 200 and r.json()["bytes_written"] == len(text), r.text
    assert env.disk("w/large.txt").read_text() == text


def test_write_keeps_the_mode_of_an_existing_file(env):
    put_files(env.ws, {"w/run.sh": "#!/bin/sh\n"})
    os.chmod(env.disk("w/run.sh"), 0o751)
    assert env.put("w/run.sh", "#!/bin/sh\necho hi\n").status_code == 200
    assert os.stat(env.disk("w/run.sh")).st_mode & 0o777 == 0o751


def test_binary_round_trip(env):
    data = bytes(range(256)) * 64 + b"\x00\xff\xfe"
    b64 = base64.b64encode(data).decode()
    r = env.put("bin/data.bin", b64, encoding="base64")
    assert r.status_code == 200, r.text
    assert r.json()["bytes_written"] == len(data)
    assert env.disk("bin/data.bin").read_bytes() == data
    body = env.get("bin/data.bin").json()
    assert body["encoding"] == "base64" and body["content"] == b64
    assert body["bytes"] == len(data)
    # base64 of text is stored as those bytes too
    r = env.put("bin/text.txt", base64.b64encode("é\n".encode()).decode(), encoding="base64")
    assert r.status_code == 200 and env.disk("bin/text.txt").read_bytes() == "é\n".encode()


def test_invalid_base64_is_400_and_writes_nothing(env):
    for bad in ("not base64!!", "abc", "@@@@"):
        r = env.put("bin/bad.bin", bad, encoding="base64")
        assert r.status_code == 400, (bad, r.text)
        assert error_code(r), r.text
    assert not env.disk("bin/bad.bin").exists()


def test_bad_write_bodies_are_422(env):
    url = env.fs("w422/f.txt")
    cases = [
        dict(content=b"not json", headers={"content-type": "application/json"}),
        dict(content=b"", headers={"content-type": "application/json"}),
        dict(json={}),
        dict(json={"text": "x"}),
        dict(json={"content": 123}),
        dict(json={"content": None}),
        dict(json={"content": ["x"]}),
        dict(json={"content": "x", "encoding": "latin-1"}),
        dict(json=["content", "x"]),
    ]
    for case in cases:
        r = env.client.put(url, **case)
        assert r.status_code == 422, (case, r.status_code, r.text)
        err = r.json()["error"]
        assert err["code"] and err["message"], r.text
    assert not env.disk("w422").exists()


def test_writes_are_atomic_for_readers_on_disk(env):
    a, b = "A" * (256 * 1024), "B" * (256 * 1024)
    assert env.put("atomic/f.txt", a).status_code == 200
    path = env.disk("atomic/f.txt")
    allowed = {a.encode(), b.encode()}
    stop = threading.Event()
    reads: list[bytes] = []
    bad: list[bytes] = []

    def reader():
        while not stop.is_set():
            with open(path, "rb") as f:
                data = f.read()
            reads.append(data[:1])
            if data not in allowed:
                bad.append(data)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(40):
            r = env.put("atomic/f.txt", b if i % 2 == 0 else a)
            assert r.status_code == 200, r.text
    finally:
        stop.set()
        t.join()
    assert not bad, (
        f"{len(bad)} of {len(reads)} reads saw a partial or mixed file "
        f"(lengths {sorted({len(x) for x in bad})[:5]})"
    )
    assert {b"A", b"B"} <= set(reads), "the reader never saw both versions"
    assert sorted(os.listdir(env.disk("atomic"))) == ["f.txt"]


def test_write_onto_a_directory_is_refused(env):
    put_files(env.ws, {"wd/sub/x": "x"})
    r = env.put("wd/sub", "oops")
    assert 400 <= r.status_code < 500 and error_code(r), r.text
    assert env.disk("wd/sub").is_dir() and env.disk("wd/sub/x").read_text() == "x"
    r = env.put("", "oops")  # the root itself
    assert 400 <= r.status_code < 500, r.text


# edit -----------------------------------------------------------------------------------


def test_edit_replaces_exactly_one_occurrence(env):
    put_files(env.ws, {"ed/f.txt": "alpha beta gamma\n"})
    r = env.client.patch(env.fs("ed/f.txt"), json={"old_text": "beta", "new_text": "BETA!"})
    assert r.status_code == 200, r.text
    assert env.disk("ed/f.txt").read_text() == "alpha BETA! gamma\n"
    body = r.json()
    assert body["path"] == "ed/f.txt" and body.get("replacements", 1) == 1
    # a multi-line edit, unicode on both sides
    r = env.client.patch(
        env.fs("ed/f.txt"), json={"old_text": "BETA! gamma\n", "new_text": "β\nγ ✓\n"}
    )
    assert r.status_code == 200 and env.disk("ed/f.txt").read_text() == "alpha β\nγ ✓\n"


def test_edit_not_found_or_ambiguous_changes_nothing(env):
    put_files(env.ws, {"ed/g.txt": "one two one\n"})
    path = env.disk("ed/g.txt")
    before = (path.read_bytes(), os.stat(path).st_ino, os.stat(path).st_mtime_ns)
    r = env.client.patch(env.fs("ed/g.txt"), json={"old_text": "three", "new_text": "x"})
    assert r.status_code == 404 and error_code(r) == "text_not_found", r.text
    r = env.client.patch(env.fs("ed/g.txt"), json={"old_text": "one", "new_text": "x"})
    assert r.status_code == 409 and error_code(r) == "ambiguous_match", r.text
    assert (path.read_bytes(), os.stat(path).st_ino, os.stat(path).st_mtime_ns) == before
    # overlapping occurrences are two occurrences
    put_files(env.ws, {"ed/h.txt": "xaaax"})
    r = env.client.patch(env.fs("ed/h.txt"), json={"old_text": "aa", "new_text": "b"})
    assert r.status_code == 409 and error_code(r) == "ambiguous_match", r.text
    assert env.disk("ed/h.txt").read_text() == "xaaax"
    # a missing file is 404 as well; bad bodies 422
    r = env.client.patch(env.fs("ed/none.txt"), json={"old_text": "a", "new_text": "b"})
    assert r.status_code == 404 and not env.disk("ed/none.txt").exists()
    for bad in ({}, {"old_text": "one"}, {"new_text": "x"}, {"old_text": 1, "new_text": "x"}):
        r = env.client.patch(env.fs("ed/g.txt"), json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert path.read_bytes() == before[0]


# delete ---------------------------------------------------------------------------------


def test_delete_file_and_directories(env):
    put_files(env.ws, {"del/f.txt": "f", "del/full/a": "a", "del/full/sub/b": "b"})
    os.makedirs(env.disk("del/empty"))
    r = env.client.delete(env.fs("del/f.txt"))
    assert r.status_code == 200, r.text
    assert not env.disk("del/f.txt").exists()
    r = env.client.delete(env.fs("del/empty"))
    assert r.status_code == 200 and not env.disk("del/empty").exists(), r.text
    r = env.client.delete(env.fs("del/full"))
    assert r.status_code == 409, r.text
    assert env.disk("del/full/sub/b").read_text() == "b"
    r = env.client.delete(env.fs("del/full"), params={"recursive": "true"})
    assert r.status_code == 200 and not env.disk("del/full").exists(), r.text
    r = env.client.delete(env.fs("del/missing"))
    assert r.status_code == 404 and error_code(r), r.text
    r = env.client.delete(env.fs("del/f.txt"))  # again: already gone
    assert r.status_code == 404


def test_delete_root_is_400(env):
    from tests.cluster.helpers import raw_request

    world_url = str(env.client.base_url).rstrip("/")
    token = env.client.headers["authorization"].split()[1]
    for raw in (env.fs() + "/", env.fs() + "/.", env.fs() + "/list/..", env.fs() + "/%2E"):
        status, body = raw_request(world_url, token, "DELETE", raw)
        assert status == 400, (raw, status, body)
        assert body["error"]["code"] == "invalid_path", body
    r = env.client.delete(env.fs() + "/", params={"recursive": "true"})
    assert r.status_code == 400
    assert env.disk("list/a.txt").exists() and env.disk("read/hello.py").exists()
