"""Receive a multipart upload straight to disk, as it streams in.

The body is parsed chunk by chunk (python-multipart's push parser); the bytes of the part
named `file` go to a staging file under the files directory, hashed on the way, so memory
does not grow with the file. The upload is refused (413) as soon as it passes the cap, and
a client that goes away leaves nothing behind: the staging file is removed on any failure
and only a complete upload is handed on.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from omnigent.domain.files import content_type_for, safe_filename
from omnigent.errors import InvalidUpload, PayloadTooLarge

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks  # defined for type checkers only

FIELD = "file"
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file's bytes


class Incomplete(Exception):
    """The client went away before the upload was complete."""


@dataclass
class Staged:
    path: str
    filename: str
    content_type: str
    bytes: int
    sha256: str

    def meta(self) -> dict:
        return {
            "filename": self.filename,
            "bytes": self.bytes,
            "content_type": self.content_type,
            "sha256": self.sha256,
        }


class _FilePart:
    """Parser callbacks: remember each part's headers, write the file part's data."""

    def __init__(self, staging: str, cap: int) -> None:
        self.staging = staging
        self.cap = cap
        self.fd: int | None = None
        self.hash = hashlib.sha256()
        self.size = 0
        self.filename: str | None = None
        self.declared_type: str | None = None
        self.done = False
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._in_file = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") != FIELD.encode() or self.fd is not None:
            return  # another field, or a second file: ignored
        raw_name = options.get(b"filename")
        self.filename = safe_filename(raw_name.decode("utf-8", "replace") if raw_name else None)
        declared = self._headers.get(b"content-type")
        self.declared_type = declared.decode("latin-1") if declared else None
        self.fd = os.open(self.staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._in_file = True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        assert self.fd is not None  # _in_file is set only once the file is open
        self.size += end - start
        if self.size > self.cap:
            raise PayloadTooLarge(f"the file is larger than the cap of {self.cap} bytes")
        view = memoryview(data)[start:end]
        self.hash.update(view)
        while view:
            view = view[os.write(self.fd, view) :]

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.done = True


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidUpload("the upload must be multipart/form-data with a 'file' part")
    return options[b"boundary"]


async def receive(request: Request, staging_dir: str, cap: int) -> Staged:
    """Stream the request's `file` part to a staging file; raise, leaving nothing, if the
    body is not a complete upload within `cap`."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap + MULTIPART_SLACK:
        raise PayloadTooLarge(f"the file is larger than the cap of {cap} bytes")
    boundary = _boundary(request)
    os.makedirs(staging_dir, exist_ok=True)
    part = _FilePart(os.path.join(staging_dir, uuid.uuid4().hex), cap)
    parser = MultipartParser(boundary, part.callbacks())
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except ClientDisconnect:
            raise Incomplete() from None
        except MultipartParseError as exc:
            raise InvalidUpload(f"malformed multipart body: {exc}") from None
        if part.fd is None or not part.done:
            raise InvalidUpload("the upload has no complete 'file' part")
        await asyncio.to_thread(os.fsync, part.fd)
    except BaseException:
        if part.fd is not None:
            os.close(part.fd)
            part.fd = None
            os.unlink(part.staging)
        raise
    finally:
        if part.fd is not None:
            os.close(part.fd)
    return Staged(
        part.staging,
        part.filename or "file",
        content_type_for(part.declared_type, part.filename or ""),
        part.size,
        part.hash.hexdigest(),
    )
