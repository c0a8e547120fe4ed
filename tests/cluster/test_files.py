"""File resources on a real cluster, through HTTP: upload any bytes (streamed to disk,
capped, nothing left behind by a broken upload), download them exactly (type, safe
name, ETag, Range, 304), list/page/delete, ownership, no runner needed, durable across a
server restart, and readable by the session's runner on its own host."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import random
import re
import select
import shlex
import socket
import tarfile
import time
import unicodedata
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.cluster.helpers import (
    env_url,
    launch,
    make_workspace,
    new_session,
    proc_env,
)
from tests.procs import Server

MiB = 1024 * 1024
CAP = 1 * MiB  # the dedicated server's cap
FILE_KEYS = {"filename", "bytes", "content_type", "created_at", "sha256"}


# --- helpers ---------------------------------------------------------------------------


def files_url(sid: str, rest: str = "") -> str:
    return f"/v1/sessions/{sid}/resources/files{rest}"


def files_dir(home: str) -> str:
    return os.path.join(home, ".omnigent", "files")


def stored(home: str, sid: str) -> list[str]:
    """What the server keeps on disk for the session."""
    d = os.path.join(files_dir(home), sid)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def incoming(home: str) -> set[str]:
    d = os.path.join(files_dir(home), ".incoming")
    return set(os.listdir(d)) if os.path.isdir(d) else set()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _quote_param(name: str) -> bytes:
    """A multipart `filename` parameter as a quoted-string (UTF-8, `\\` and `"` escaped)."""
    return b'"' + name.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


def form(
    name: str | None,
    data: bytes,
    content_type: str | None = None,
    *,
    field: str = "file",
    extra: dict | None = None,
    raw_name: bytes | None = None,
) -> tuple[bytes, str]:
    """A multipart/form-data body built by hand (exactly what is sent: a part with no
    Content-Type really has none), and its Content-Type header."""
    boundary = "----omni" + uuid.uuid4().hex
    out = io.BytesIO()
    for key, value in (extra or {}).items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    disposition = b'Content-Disposition: form-data; name="' + field.encode() + b'"'
    if raw_name is not None:
        disposition += b"; filename=" + raw_name
    elif name is not None:
        disposition += b"; filename=" + _quote_param(name)
    out.write(f"--{boundary}\r\n".encode() + disposition + b"\r\n")
    if content_type is not None:
        out.write(f"Content-Type: {content_type}\r\n".encode())
    out.write(b"\r\n" + data + f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def upload(client, sid: str, name: str | None, data: bytes, content_type: str | None = None, **kw):
    body, ctype = form(name, data, content_type, **kw)
    return client.post(files_url(sid), content=body, headers={"Content-Type": ctype})


def uploaded(
    client, sid: str, name: str, data: bytes, content_type: str | None = "application/octet-stream"
) -> dict:
    r = upload(client, sid, name, data, content_type)
    assert r.status_code == 201, r.text
    return r.json()


def disposition_names(header: str) -> tuple[str, str]:
    """(`filename` fallback, `filename*` decoded) of an attachment Content-Disposition."""
    assert header.split(";")[0].strip().lower() == "attachment", header
    header.encode("ascii")
    plain = re.search(r'filename="((?:[^"\\]|\\.)*)"', header)
    star = re.search(r"filename\*=UTF-8''([A-Za-z0-9%\-._~!$&+^`|']*)", header)
    assert plain and star, header
    return re.sub(r"\\(.)", r"\1", plain.group(1)), unquote(star.group(1), errors="strict")


def assert_error(r, status: int, code: str | None = None) -> None:
    """The contract's error: the status, and `{"error": {"code", "message"}}` as JSON."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("content-type", "").startswith("application/json"), (
        r.headers.get("content-type"),
        r.text,
    )
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str), body
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body


def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


class RawPost:
    """A POST on a plain socket, to send exactly what a broken or hostile client sends:
    a Content-Length that lies, a body cut short, a chunked body, a close mid-way."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        path: str,
        content_type: str,
        content_length: int | None = None,
        headers: dict | None = None,
    ) -> None:
        u = urlsplit(base_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        self.chunked = content_length is None
        head = [
            f"POST {path} HTTP/1.1",
            f"Host: {u.hostname}:{u.port}",
            f"Content-Type: {content_type}",
        ]
        if token:
            head.append(f"Authorization: Bearer {token}")
        head.append(
            "Transfer-Encoding: chunked" if self.chunked else f"Content-Length: {content_length}"
        )
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        self.sent = 0

    def answered(self) -> bool:
        return bool(select.select([self.sock], [], [], 0)[0])

    def send(self, data: bytes) -> bool:
        """Send a piece of the body; False once the server answered or hung up."""
        if self.answered():
            return False
        frame = f"{len(data):x}\r\n".encode() + data + b"\r\n" if self.chunked else data
        try:
            self.sock.sendall(frame)
        except (BrokenPipeError, ConnectionResetError):
            return False
        self.sent += len(data)
        return True

    def finish(self) -> None:
        if self.chunked:
            try:
                self.sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    def response(self, timeout: float = 30) -> tuple[int, dict, bytes]:
        self.sock.settimeout(timeout)
        resp = http.client.HTTPResponse(self.sock)
        resp.begin()
        body = resp.read()
        self.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body

    def close(self, reset: bool = False) -> None:
        if reset:  # RST instead of FIN
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        self.sock.close()


def file_head(
    name: str = "big.bin", content_type: str = "application/octet-stream"
) -> tuple[bytes, bytes, str]:
    """(the bytes before a file part's data, the bytes after it, the body's content type)."""
    boundary = "----omni" + uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{name}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def api_pids(home: str) -> list[int]:
    """The processes serving the API (the Serve replicas) of the server with this HOME."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if (
                b"ServeReplica" in Path(f"/proc/{entry}/cmdline").read_bytes()[:200]
                and proc_env(int(entry)).get("HOME") == home
            ):
                found.append(int(entry))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            pass
    assert found, "no API replica found"
    return found


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _png() -> bytes:
    rng = random.Random(7)
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(64 * 1024 - 16)


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("a/readme.txt", b"hello\n"), ("a/blob.bin", os.urandom(5000))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _every_byte() -> bytes:
    rng = random.Random(42)
    out = bytearray()
    for _ in range(40):
        block = list(range(256))
        rng.shuffle(block)
        out += bytes(block)
    out += bytes(range(256)) + bytes(range(255, -1, -1))
    out += b"\r\n--" + b"\r\n\r\n" + b"--\r\n"  # what multipart boundaries are made of
    return bytes(out) + rng.randbytes(70_000)


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sid(world):
    """A session that never had a runner."""
    s = new_session(world.alice)
    yield s["id"]
    world.alice.delete(f"/v1/sessions/{s['id']}")


@pytest.fixture()
def fresh(world):
    """A new session (no runner) per test, deleted afterwards."""
    made = []

    def make() -> str:
        made.append(new_session(world.alice)["id"])
        return made[-1]

    yield make
    for s in made:
        world.alice.delete(f"/v1/sessions/{s}")


class Dedicated:
    server: Server


@pytest.fixture(scope="module")
def capped():
    """A server of its own with a small cap (and restartable)."""
    holder = Dedicated()
    holder.server = Server(env={"OMNIGENT_FILE_CAP_BYTES": str(CAP)}).start()
    try:
        yield holder
    finally:
        holder.server.stop()


# --- 1. any bytes, any type, back exactly ----------------------------------------------

ROUND_TRIPS = [
    # (id, filename, part Content-Type (None: the part has none), data, expected type)
    (
        "csv",
        "data.csv",
        "text/csv",
        b"id,name\r\n1,Ann\r\n2,\xc3\x89mile\r\n3,caf\xe9\r\n",
        "text/csv",
    ),
    ("png", "image.png", "image/png", _png(), "image/png"),
    ("tarball", "bundle.tar.gz", "application/gzip", _tarball(), "application/gzip"),
    ("no-extension", "Makefile", None, b"all:\n\techo hi\n", "application/octet-stream"),
    ("zero-bytes", "empty.dat", "application/octet-stream", b"", "application/octet-stream"),
    (
        "every-byte-value",
        "bytes.bin",
        "application/octet-stream",
        _every_byte(),
        "application/octet-stream",
    ),
    ("guessed-png", "photo.png", None, _png()[:5000], "image/png"),
    ("guessed-csv", "table.csv", None, b"a,b\n1,2\n", "text/csv"),
    (
        "declared-with-params",
        "x.json",
        "application/json; charset=utf-16",
        '{"k": "v"}'.encode("utf-16"),
        "application/json; charset=utf-16",
    ),
    ("html-is-not-rendered", "page.html", "text/html", b"<script>alert(1)</script>", "text/html"),
    (
        "declared-beats-name",
        "notes.txt",
        "application/x-custom",
        b"\x00\x01\x02",
        "application/x-custom",
    ),
]


@pytest.mark.parametrize(
    "name, ctype, data, expected_type",
    [c[1:] for c in ROUND_TRIPS],
    ids=[c[0] for c in ROUND_TRIPS],
)
def test_round_trip_of_any_bytes_and_type(world, sid, name, ctype, data, expected_type):
    r = upload(world.alice, sid, name, data, ctype)
    assert r.status_code == 201, r.text
    res = r.json()
    assert res["id"].startswith("file_") and res["object"] == "session.resource"
    assert res["type"] == "file" and res["session_id"] == sid and res["name"] == name
    meta = res["metadata"]
    assert set(meta) == FILE_KEYS
    assert meta["filename"] == name and meta["bytes"] == len(data)
    assert meta["sha256"] == sha(data) and meta["content_type"] == expected_type
    assert isinstance(meta["created_at"], int) and abs(meta["created_at"] - time.time()) < 120
    fid = res["id"]
    assert world.alice.get(files_url(sid, f"/{fid}")).json() == res

    # the bytes, on the server's disk under its id (the name plays no part in the path)
    on_disk = os.path.join(files_dir(world.server.home), sid, fid)
    assert Path(on_disk).read_bytes() == data

    d = world.alice.get(files_url(sid, f"/{fid}/content"))
    assert d.status_code == 200
    assert d.content == data and sha(d.content) == meta["sha256"]
    assert d.headers["content-length"] == str(len(data))
    assert d.headers["etag"] == f'"{meta["sha256"]}"'
    assert d.headers["x-content-type-options"] == "nosniff"
    assert disposition_names(d.headers["content-disposition"])[1] == name
    # served with the type it was uploaded with, as it is (nothing added)
    assert d.headers["content-type"] == expected_type


def test_upload_like_curl_form(world, sid):
    """A stock client (httpx `files=`, i.e. `curl -F file=@…`) works as it is."""
    data = b"x,y\n" * 1000
    r = world.alice.post(
        files_url(sid),
        files={"file": ("plain.csv", data, "text/csv")},
        data={"purpose": "assistants"},
    )
    assert r.status_code == 201, r.text
    meta = r.json()["metadata"]
    assert (meta["filename"], meta["bytes"], meta["sha256"]) == ("plain.csv", len(data), sha(data))
    assert world.alice.get(files_url(sid, f"/{r.json()['id']}/content")).content == data


NAMES = [
    # (what the client sends as filename, what the server shows and serves it as)
    ('quote "me".txt', 'quote "me".txt'),
    ("résumé ünïcödé 日本.pdf", "résumé ünïcödé 日本.pdf"),
    (unicodedata.normalize("NFD", "résumé.pdf"), "résumé.pdf"),  # NFC
    ("../../../etc/passwd", "passwd"),
    ("/abs/path/evil.sh", "evil.sh"),
    ("..\\..\\win\\evil.bat", "evil.bat"),
    ("C:\\Users\\eve\\report.docx", "report.docx"),
    ("sub/dir\\mixed/name.txt", "name.txt"),
    ("..", "file"),
    ("", "file"),
    ("tab\tand\x1bescape.txt", "tabandescape.txt"),
    ("semi;colon,comma 100%.txt", "semi;colon,comma 100%.txt"),
]


def test_filenames_are_made_safe(world, fresh):
    sid = fresh()
    data = b"payload"
    for sent, shown in NAMES:
        r = upload(world.alice, sid, sent, data, "application/octet-stream")
        assert r.status_code == 201, (sent, r.text)
        res = r.json()
        assert res["name"] == res["metadata"]["filename"] == shown, sent
        d = world.alice.get(files_url(sid, f"/{res['id']}/content"))
        assert d.content == data
        fallback, exact = disposition_names(d.headers["content-disposition"])
        assert exact == shown, sent
        assert fallback.isascii() and len(fallback) == len(shown)
    # a part named `file` with no filename at all
    r = upload(world.alice, sid, None, data, None)
    assert r.status_code == 201 and r.json()["name"] == "file"
    assert r.json()["metadata"]["content_type"] == "application/octet-stream"
    # the names never became paths: only file ids under the session's directory
    assert all(f.startswith("file_") for f in stored(world.server.home, sid))
    assert len(stored(world.server.home, sid)) == len(NAMES) + 1
    for root, _, names in os.walk(os.path.join(world.server.home, ".omnigent")):
        assert not {"passwd", "evil.sh", "evil.bat", "report.docx"} & set(names), root


# --- Range, ETag, 304 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def blob(world, sid):
    data = random.Random(3).randbytes(3 * MiB + 17)  # spans several 1 MiB read chunks
    res = uploaded(world.alice, sid, "blob.bin", data)
    return res["id"], data


def test_range_requests_resume_a_download(world, sid, blob):
    fid, data = blob
    url = files_url(sid, f"/{fid}/content")
    size = len(data)
    etag = f'"{sha(data)}"'
    cases = [
        ("bytes=1000000-", 1000000, size),  # resume where the download broke off
        ("bytes=0-0", 0, 1),
        ("bytes=100-199", 100, 200),  # a middle range
        (f"bytes={MiB - 5}-{2 * MiB + 5}", MiB - 5, 2 * MiB + 6),  # across read chunks
        ("bytes=-100", size - 100, size),  # the last 100 bytes
        (f"bytes={size - 1}-", size - 1, size),
        (f"bytes=10-{size + 1000}", 10, size),  # an end past the end is cut
    ]
    for rng, start, end in cases:
        r = world.alice.get(url, headers={"Range": rng})
        assert r.status_code == 206, (rng, r.status_code)
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{size}", rng
        assert r.headers["content-length"] == str(end - start)
        assert r.content == data[start:end], rng
        assert r.headers["etag"] == etag
        assert r.headers["x-content-type-options"] == "nosniff"
    # a resumed download: the first part, then the rest, make the file
    head = world.alice.get(url, headers={"Range": "bytes=0-1234566"}).content
    rest = world.alice.get(url, headers={"Range": "bytes=1234567-"}).content
    assert head + rest == data
    # If-Range: the range only while the file is still the one the client had
    r = world.alice.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert r.status_code == 206 and r.content == data[10:20]
    r = world.alice.get(url, headers={"Range": "bytes=10-19", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == data
    # two ranges at once
    r = world.alice.get(url, headers={"Range": "bytes=0-9,20-29"})
    assert r.status_code == 206
    assert r.headers["content-type"].startswith("multipart/byteranges")
    assert data[0:10] in r.content and data[20:30] in r.content


def test_unsatisfiable_range_is_416_with_the_error_shape(world, sid, blob):
    fid, data = blob
    r = world.alice.get(
        files_url(sid, f"/{fid}/content"), headers={"Range": f"bytes={len(data) + 10}-"}
    )
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(data)}"
    assert_error(r, 416)


def test_malformed_range_is_ignored_or_the_error_shape(world, sid, blob):
    """A Range the server cannot read: ignored (the whole file, RFC 9110 allows it) or
    refused with the contract's error body, never a bare text/plain answer."""
    fid, data = blob
    for rng in ["bytes=abc", "items=0-1", "bytes=5-2"]:
        r = world.alice.get(files_url(sid, f"/{fid}/content"), headers={"Range": rng})
        if r.status_code == 200:
            assert r.content == data, rng
        else:
            assert_error(r, 400)


def test_if_none_match(world, sid, blob):
    fid, data = blob
    url = files_url(sid, f"/{fid}/content")
    etag = world.alice.get(files_url(sid, f"/{fid}")).json()["metadata"]["sha256"]
    etag = f'"{etag}"'
    for inm in [etag, f"W/{etag}", f'"other", {etag}', "*"]:
        r = world.alice.get(url, headers={"If-None-Match": inm})
        assert r.status_code == 304, inm
        assert r.content == b"" and r.headers["etag"] == etag
    for inm in ['"0000"', etag[:-2] + '"', f'"{"0" * 64}"']:
        r = world.alice.get(url, headers={"If-None-Match": inm})
        assert r.status_code == 200 and r.content == data, inm
        assert r.headers["etag"] == etag
    # 304 wins over a Range
    r = world.alice.get(url, headers={"If-None-Match": etag, "Range": "bytes=0-9"})
    assert r.status_code == 304


# --- 2. broken, oversized and malformed uploads leave nothing ----------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_gone_mid_upload_leaves_nothing(world, fresh, framing, how):
    sid = fresh()
    home = world.server.home
    before = incoming(home)
    head, _, ctype = file_head()
    post = RawPost(
        world.server.url,
        world.server.token,
        files_url(sid),
        ctype,
        content_length=64 * MiB if framing == "content-length" else None,
    )
    assert post.send(head)
    for _ in range(16):
        assert post.send(os.urandom(128 * 1024))
    # the server is writing the upload to a staging file
    assert wait_until(lambda: incoming(home) - before, 10), "no staging file appeared"
    staging = incoming(home) - before
    post.close(reset=how == "reset")
    assert wait_until(lambda: not (incoming(home) & staging), 10), "the partial file stayed"
    assert incoming(home) == before
    assert stored(home, sid) == []
    listing = world.alice.get(files_url(sid)).json()
    assert listing["data"] == [] and listing["has_more"] is False
    time.sleep(0.5)  # and nothing turns up late
    assert stored(home, sid) == [] and world.alice.get(files_url(sid)).json()["data"] == []


def test_malformed_uploads_are_400(world, fresh):
    sid = fresh()
    home = world.server.home
    before = incoming(home)
    post = world.alice.post
    r = post(files_url(sid), json={"file": "not multipart"})
    assert_error(r, 400, "invalid_upload")
    r = post(
        files_url(sid), content=b"raw bytes", headers={"Content-Type": "application/octet-stream"}
    )
    assert_error(r, 400, "invalid_upload")
    r = post(files_url(sid), content=b"x", headers={"Content-Type": "multipart/form-data"})
    assert_error(r, 400, "invalid_upload")  # no boundary
    r = post(files_url(sid))  # no body, no type
    assert_error(r, 400, "invalid_upload")
    # multipart, but no `file` part
    body, ctype = form("x.txt", b"data", "text/plain", field="document")
    assert_error(
        post(files_url(sid), content=body, headers={"Content-Type": ctype}), 400, "invalid_upload"
    )
    body, ctype = form(None, b"", None, field="purpose")
    assert_error(
        post(files_url(sid), content=body, headers={"Content-Type": ctype}), 400, "invalid_upload"
    )
    # an empty multipart body, and one that is not multipart inside
    assert_error(
        post(
            files_url(sid),
            content=b"",
            headers={"Content-Type": "multipart/form-data; boundary=abc"},
        ),
        400,
        "invalid_upload",
    )
    assert_error(
        post(
            files_url(sid),
            content=b"hello world, no boundary here",
            headers={"Content-Type": "multipart/form-data; boundary=abc"},
        ),
        400,
        "invalid_upload",
    )
    # a `file` part that never ends (the body stops inside it)
    body, ctype = form("cut.bin", os.urandom(300_000), "application/octet-stream")
    cut = body[: body.rindex(b"\r\n--")]
    assert_error(
        post(files_url(sid), content=cut, headers={"Content-Type": ctype}), 400, "invalid_upload"
    )
    assert incoming(home) == before and stored(home, sid) == []
    assert world.alice.get(files_url(sid)).json()["data"] == []


def test_over_the_cap_is_413_and_nothing_is_stored(capped):
    server = capped.server
    home = server.home
    with server.client(server.token) as alice:
        sid = new_session(alice)["id"]
        before = incoming(home)

        # exactly the cap is fine
        data = os.urandom(CAP)
        r = upload(alice, sid, "at-cap.bin", data, "application/octet-stream")
        assert r.status_code == 201, r.text
        assert r.json()["metadata"]["bytes"] == CAP
        ok_id = r.json()["id"]
        assert alice.get(files_url(sid, f"/{ok_id}/content")).content == data

        # one byte more, with an honest Content-Length: refused while streaming
        body, ctype = form("over.bin", data + b"!", "application/octet-stream")
        post = RawPost(server.url, server.token, files_url(sid), ctype, len(body))
        for i in range(0, len(body), 64 * 1024):
            if not post.send(body[i : i + 64 * 1024]):
                break
        status, _, raw = post.response()
        assert status == 413
        assert json.loads(raw)["error"]["code"] == "payload_too_large"

        # a Content-Length over the cap: refused up front, before any byte of the body
        head, _, ctype = file_head()
        post = RawPost(server.url, server.token, files_url(sid), ctype, 50 * CAP)
        t0 = time.monotonic()
        status, headers, raw = post.response(timeout=10)
        assert status == 413 and time.monotonic() - t0 < 5
        assert headers["content-type"].startswith("application/json")
        err = json.loads(raw)
        assert set(err) == {"error"} and err["error"]["code"] == "payload_too_large"
        assert err["error"]["message"]
        # the same as curl sends it (`Expect: 100-continue`): no "go on", the 413 at once
        post = RawPost(
            server.url,
            server.token,
            files_url(sid),
            ctype,
            50 * CAP,
            headers={"Expect": "100-continue"},
        )
        status, _, raw = post.response(timeout=10)
        assert status == 413 and json.loads(raw)["error"]["code"] == "payload_too_large"

        # chunked (no length given): refused once the body runs past the cap
        post = RawPost(server.url, server.token, files_url(sid), ctype, None)
        post.send(head)
        total = 16 * CAP
        while post.sent < total and post.send(os.urandom(64 * 1024)):
            pass
        post.finish()
        status, _, raw = post.response()
        assert status == 413, raw
        assert json.loads(raw)["error"]["code"] == "payload_too_large"
        assert post.sent < total  # it did not have to send it all to hear so

        # nothing of the refused uploads anywhere
        assert wait_until(lambda: incoming(home) == before, 5)
        assert stored(home, sid) == [ok_id]
        assert [f["id"] for f in alice.get(files_url(sid)).json()["data"]] == [ok_id]


# --- 3. no runner needed; the runner can read them; restart ------------------------------


def test_concurrent_uploads_to_one_session(world, fresh):
    """Several files dropped at once: each arrives whole, none mixed with another."""
    from concurrent.futures import ThreadPoolExecutor

    sid = fresh()
    blobs = {f"par{i}.bin": os.urandom(3 * MiB + i) for i in range(6)}
    with ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(
                lambda kv: upload(world.alice, sid, kv[0], kv[1], "application/octet-stream"),
                blobs.items(),
            )
        )
    assert [r.status_code for r in results] == [201] * 6
    for r in results:
        meta = r.json()["metadata"]
        data = blobs[meta["filename"]]
        assert meta["sha256"] == sha(data) and meta["bytes"] == len(data)
        assert world.alice.get(files_url(sid, f"/{r.json()['id']}/content")).content == data
    assert len({r.json()["id"] for r in results}) == 6
    assert len(world.alice.get(files_url(sid)).json()["data"]) == 6
    assert len(stored(world.server.home, sid)) == 6 and incoming(world.server.home) == set()


def test_files_without_a_runner(world, fresh):
    sid = fresh()
    assert world.alice.get(f"/v1/sessions/{sid}").json()["runner_id"] is None
    res = uploaded(world.alice, sid, "r.txt", b"no runner", "text/plain")
    fid = res["id"]
    assert world.alice.get(files_url(sid)).json()["data"] == [res]
    assert world.alice.get(files_url(sid, f"/{fid}")).json() == res
    assert world.alice.get(files_url(sid, f"/{fid}/content")).content == b"no runner"
    # the generic resource routes: a file by id works without a runner…
    r = world.alice.get(f"/v1/sessions/{sid}/resources/{fid}")
    assert r.status_code == 200 and r.json() == res
    # …the runner's inventory does not
    assert_error(
        world.alice.get(f"/v1/sessions/{sid}/resources", params={"type": "file"}),
        409,
        "runner_not_bound",
    )
    assert_error(world.alice.post(files_url(sid, f"/{fid}/fetch")), 409, "runner_not_bound")
    r = world.alice.delete(files_url(sid, f"/{fid}"))
    assert r.status_code == 200
    assert r.json() == {"id": fid, "object": "session.resource.deleted", "deleted": True}


def test_the_runner_reads_files_on_its_own_host(world):
    alice = world.alice
    ws = make_workspace(world.node_a.home)
    s = new_session(alice)
    sid = s["id"]
    other = new_session(alice)["id"]
    try:
        data = random.Random(9).randbytes(9 * MiB + 3)  # several chunks on the way
        before_launch = uploaded(alice, sid, "data set.bin", data)  # before the runner
        empty = uploaded(alice, sid, "empty", b"")
        foreign = uploaded(alice, other, "foreign.bin", b"not yours")
        r = launch(alice, world.host_a, sid, ws)
        assert r.status_code == 200, r.text

        fid = before_launch["id"]
        r = alice.post(files_url(sid, f"/{fid}/fetch"))
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["file_id"] == fid and got["bytes"] == len(data)
        assert got["sha256"] == sha(data)
        path = got["path"]
        # on node A's machine (its HOME), not the server's
        real = os.path.realpath(path)
        assert real.startswith(os.path.realpath(world.node_a.home) + os.sep), path
        assert not real.startswith(os.path.realpath(world.server.home) + os.sep)
        assert Path(path).read_bytes() == data
        # the agent, in its environment, reads it there
        sh = alice.post(
            env_url(sid, "/shell"),
            json={"command": f"sha256sum {shlex.quote(path)}; stat -c %s {shlex.quote(path)}"},
        )
        assert sh.status_code == 200, sh.text
        out = sh.json()
        assert out["exit_code"] == 0, out
        assert out["stdout"].split() == [sha(data), path, str(len(data))]
        # again: the same place, the same bytes
        again = alice.post(files_url(sid, f"/{fid}/fetch"))
        assert again.status_code == 200 and again.json() == got

        r = alice.post(files_url(sid, f"/{empty['id']}/fetch"))
        assert r.status_code == 200 and r.json()["bytes"] == 0
        assert Path(r.json()["path"]).read_bytes() == b""

        # a file uploaded while the runner runs
        late = uploaded(alice, sid, "late.txt", b"late\n")
        r = alice.post(files_url(sid, f"/{late['id']}/fetch"))
        assert r.status_code == 200 and Path(r.json()["path"]).read_bytes() == b"late\n"

        # not another session's file, not an unknown one, not someone else's session
        assert_error(alice.post(files_url(sid, f"/{foreign['id']}/fetch")), 404)
        assert_error(alice.post(files_url(sid, "/file_0000000000000000000000/fetch")), 404)
        assert_error(world.bob.post(files_url(sid, f"/{fid}/fetch")), 404)
        assert world.anon.post(files_url(sid, f"/{fid}/fetch")).status_code == 401

        # the generic inventory now lists the files next to the environment
        listing = alice.get(f"/v1/sessions/{sid}/resources", params={"type": "file"})
        assert listing.status_code == 200, listing.text
        body = listing.json()
        want = [
            alice.get(files_url(sid, f"/{f['id']}")).json() for f in (before_launch, empty, late)
        ]
        assert sorted(body["data"], key=lambda x: x["id"]) == want
        assert body["object"] == "list" and body["has_more"] is False
        assert body["first_id"] == body["data"][0]["id"]
        assert body["last_id"] == body["data"][-1]["id"]
        everything = alice.get(f"/v1/sessions/{sid}/resources").json()["data"]
        assert {(x["type"], x["id"]) for x in everything} == {("environment", "default")} | {
            ("file", f["id"]) for f in want
        }
        envs = alice.get(f"/v1/sessions/{sid}/resources", params={"type": "environment"})
        assert [x["id"] for x in envs.json()["data"]] == ["default"]
        r = alice.get(f"/v1/sessions/{sid}/resources/{fid}")
        assert r.status_code == 200 and r.json() == want[0]
        assert_error(alice.get(f"/v1/sessions/{sid}/resources/{foreign['id']}"), 404)

        # a deleted file can no longer be fetched
        assert alice.delete(files_url(sid, f"/{late['id']}")).status_code == 200
        assert_error(alice.post(files_url(sid, f"/{late['id']}/fetch")), 404)

        # deleting the session removes its files on the server, and the runner's copies
        assert stored(world.server.home, sid)
        assert alice.delete(f"/v1/sessions/{sid}").status_code == 200
        assert not os.path.exists(os.path.join(files_dir(world.server.home), sid))
        assert wait_until(lambda: not os.path.exists(path), 10), "the host copy stayed"
    finally:
        alice.delete(f"/v1/sessions/{sid}")
        alice.delete(f"/v1/sessions/{other}")


def test_files_survive_a_server_restart(capped):
    server = capped.server
    blobs = {
        "a.bin": os.urandom(700_000),
        "empty": b"",
        "résumé.csv": b"x,y\n1,2\n",
        "gone.txt": b"deleted before the restart",
    }
    with server.client(server.token) as alice:
        sid = new_session(alice)["id"]
        ids = {name: uploaded(alice, sid, name, data)["id"] for name, data in blobs.items()}
        assert alice.delete(files_url(sid, f"/{ids.pop('gone.txt')}")).status_code == 200
        blobs.pop("gone.txt")
        listing = alice.get(files_url(sid), params={"order": "asc"}).json()
        metas = {i: alice.get(files_url(sid, f"/{i}")).json() for i in ids.values()}
    server.stop()

    capped.server = server = Server(server.home, server.port, env=server.env)
    server.start()
    with server.client(server.token) as alice:
        assert alice.get(files_url(sid), params={"order": "asc"}).json() == listing
        for name, fid in ids.items():
            assert alice.get(files_url(sid, f"/{fid}")).json() == metas[fid]
            d = alice.get(files_url(sid, f"/{fid}/content"))
            assert d.status_code == 200 and d.content == blobs[name]
            assert d.headers["etag"] == f'"{sha(blobs[name])}"'
            r = alice.get(
                files_url(sid, f"/{fid}/content"), headers={"If-None-Match": d.headers["etag"]}
            )
            assert r.status_code == 304
        # and it goes on: upload, delete after the restart
        new = uploaded(alice, sid, "after.bin", b"after")
        assert alice.delete(files_url(sid, f"/{ids['a.bin']}")).status_code == 200
        assert sorted(stored(server.home, sid)) == sorted(
            [ids["empty"], ids["résumé.csv"], new["id"]]
        )


# --- 4. ownership, auth, delete, listing -----------------------------------------------


def test_a_file_of_another_session_or_user_is_404(world, fresh):
    alice, bob = world.alice, world.bob
    mine, other = fresh(), fresh()
    res = uploaded(alice, mine, "mine.bin", b"mine")
    fid = res["id"]
    for client, sid in [(alice, other), (bob, mine)]:
        assert_error(client.get(files_url(sid, f"/{fid}")), 404)
        assert_error(client.get(files_url(sid, f"/{fid}/content")), 404)
        assert_error(client.delete(files_url(sid, f"/{fid}")), 404)
        assert_error(client.get(f"/v1/sessions/{sid}/resources/{fid}"), 404)
    assert_error(alice.get(files_url(other, f"/{fid}")), 404, "file_not_found")
    assert_error(bob.get(files_url(mine)), 404, "session_not_found")
    assert_error(upload(bob, mine, "intruder.bin", b"x"), 404, "session_not_found")
    assert_error(upload(alice, "conv_nope", "x.bin", b"x"), 404, "session_not_found")
    assert_error(alice.get(files_url(mine, "/file_0000000000000000000000")), 404, "file_not_found")
    assert_error(alice.get(files_url(mine, "/file_0000000000000000000000/content")), 404)
    assert_error(alice.delete(files_url(mine, "/file_0000000000000000000000")), 404)
    for call in [
        lambda: world.anon.get(files_url(mine)),
        lambda: world.anon.get(files_url(mine, f"/{fid}")),
        lambda: world.anon.get(files_url(mine, f"/{fid}/content")),
        lambda: world.anon.delete(files_url(mine, f"/{fid}")),
        lambda: upload(world.anon, mine, "anon.bin", b"x"),
    ]:
        assert_error(call(), 401)
    with world.server.client("omg_not_a_token") as wrong:
        assert_error(wrong.get(files_url(mine, f"/{fid}/content")), 401)
    # nothing of it changed anything
    assert alice.get(files_url(mine, f"/{fid}/content")).content == b"mine"
    assert [f["id"] for f in alice.get(files_url(mine)).json()["data"]] == [fid]
    assert stored(world.server.home, mine) == [fid] and stored(world.server.home, other) == []


def test_delete_removes_the_bytes(world, fresh):
    sid = fresh()
    keep = uploaded(world.alice, sid, "keep.bin", b"keep")
    res = uploaded(world.alice, sid, "bye.bin", os.urandom(100_000))
    fid = res["id"]
    path = os.path.join(files_dir(world.server.home), sid, fid)
    assert os.path.isfile(path)
    r = world.alice.delete(files_url(sid, f"/{fid}"))
    assert r.status_code == 200
    assert r.json() == {"id": fid, "object": "session.resource.deleted", "deleted": True}
    assert not os.path.exists(path)
    assert_error(world.alice.get(files_url(sid, f"/{fid}")), 404, "file_not_found")
    assert_error(world.alice.get(files_url(sid, f"/{fid}/content")), 404)
    assert_error(world.alice.delete(files_url(sid, f"/{fid}")), 404)
    assert [f["id"] for f in world.alice.get(files_url(sid)).json()["data"]] == [keep["id"]]
    assert stored(world.server.home, sid) == [keep["id"]]


def test_deleting_the_session_removes_its_files(world):
    sid = new_session(world.alice)["id"]
    ids = [uploaded(world.alice, sid, f"f{i}.bin", os.urandom(1000))["id"] for i in range(3)]
    assert stored(world.server.home, sid) == sorted(ids)
    assert world.alice.delete(f"/v1/sessions/{sid}").status_code == 200
    assert not os.path.exists(os.path.join(files_dir(world.server.home), sid))
    assert_error(world.alice.get(files_url(sid, f"/{ids[0]}")), 404)
    assert_error(world.alice.get(files_url(sid)), 404)


def test_listing_pages_in_both_orders(world, fresh):
    sid = fresh()
    alice = world.alice
    ids = [uploaded(alice, sid, f"n{i:02}.txt", b"%d" % i, "text/plain")["id"] for i in range(25)]
    assert ids == sorted(ids)  # ids sort in creation order
    rev = ids[::-1]

    def page(**params) -> dict:
        r = alice.get(files_url(sid), params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "list"
        got = [f["id"] for f in body["data"]]
        assert body["first_id"] == (got[0] if got else None)
        assert body["last_id"] == (got[-1] if got else None)
        assert all(f["type"] == "file" and set(f["metadata"]) == FILE_KEYS for f in body["data"])
        return {
            "ids": got,
            "more": body["has_more"],
            "last": body["last_id"],
            "first": body["first_id"],
        }

    default = page()  # newest first, 20
    assert default["ids"] == rev[:20] and default["more"] is True
    # forward through everything, both orders
    for order, seq in (("desc", rev), ("asc", ids)):
        seen, after, more = [], None, True
        pages = []
        while more:
            p = page(limit=10, order=order, **({"after": after} if after else {}))
            seen += p["ids"]
            after, more = p["last"], p["more"]
            pages.append(len(p["ids"]))
        assert seen == seq and pages == [10, 10, 5], order
    # backward with `before`
    p = page(limit=10, before=rev[20])
    assert p["ids"] == rev[10:20] and p["more"] is True
    p = page(limit=10, before=p["first"])
    assert p["ids"] == rev[:10] and p["more"] is False
    p = page(limit=10, order="asc", before=ids[5])
    assert p["ids"] == ids[:5] and p["more"] is False
    p = page(limit=3, order="asc", before=ids[24])
    assert p["ids"] == ids[21:24] and p["more"] is True
    assert page(limit=1000, order="asc")["ids"] == ids
    # a deleted cursor still works (keyset)
    assert alice.delete(files_url(sid, f"/{ids[12]}")).status_code == 200
    p = page(limit=10, order="asc", after=ids[12])
    assert p["ids"] == ids[13:23] and p["more"] is True
    p = page(limit=10, after=ids[12])
    assert p["ids"] == ids[:12][::-1][:10] and p["more"] is True
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"order": "up"}, {"order": "ASC"}):
        assert_error(alice.get(files_url(sid), params=bad), 422, "validation_error")


# --- the large file ---------------------------------------------------------------------


def test_a_large_file_streams_both_ways(world, fresh):
    """~300 MiB, generated while it is sent: stored exactly, the API's memory does not grow
    with it, and a download broken off half-way resumes with a Range."""
    sid = fresh()
    size = 300 * MiB + 12345
    head, tail, ctype = file_head("big.bin")
    digest = hashlib.sha256()

    def body():
        yield head
        left = size
        while left:
            block = os.urandom(min(left, MiB))
            digest.update(block)
            left -= len(block)
            yield block
        yield tail

    # whichever replica takes the upload or the download (the world runs two)
    pids = api_pids(world.server.home)
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart the peak-RSS count
        except OSError:
            pass  # then the peak so far is the base: a weaker check, still one
    base = {pid: peak_rss(pid) for pid in pids}

    def grown() -> int:
        return max(peak_rss(pid) - base[pid] for pid in pids)

    t0 = time.monotonic()
    r = world.alice.post(
        files_url(sid),
        content=body(),
        headers={"Content-Type": ctype, "Content-Length": str(len(head) + size + len(tail))},
        timeout=300,
    )
    up_s = time.monotonic() - t0
    assert r.status_code == 201, r.text
    want = digest.hexdigest()
    meta = r.json()["metadata"]
    assert meta["bytes"] == size and meta["sha256"] == want
    fid = r.json()["id"]
    on_disk = os.path.join(files_dir(world.server.home), sid, fid)
    assert os.path.getsize(on_disk) == size
    assert incoming(world.server.home) == set()
    assert grown() < 100 * MiB, "the upload was held in memory"

    # download, broken off after ~120 MiB…
    url = files_url(sid, f"/{fid}/content")
    cut = 120 * MiB + 7
    got = hashlib.sha256()
    n = 0
    t0 = time.monotonic()
    with world.alice.stream("GET", url, timeout=300) as d:
        assert d.status_code == 200 and d.headers["content-length"] == str(size)
        assert d.headers["etag"] == f'"{want}"'
        for chunk in d.iter_raw():
            take = chunk[: cut - n]
            got.update(take)
            n += len(take)
            if n >= cut:
                break
    # …and resumed where it stopped
    with world.alice.stream(
        "GET", url, headers={"Range": f"bytes={cut}-", "If-Range": f'"{want}"'}, timeout=300
    ) as d:
        assert d.status_code == 206
        assert d.headers["content-range"] == f"bytes {cut}-{size - 1}/{size}"
        for chunk in d.iter_raw():
            got.update(chunk)
            n += len(chunk)
    down_s = time.monotonic() - t0
    assert n == size and got.hexdigest() == want
    assert grown() < 100 * MiB, "the download was held in memory"
    print(f"300 MiB: upload {up_s:.1f}s, download {down_s:.1f}s")
    assert world.alice.delete(files_url(sid, f"/{fid}")).status_code == 200
    assert not os.path.exists(on_disk)
