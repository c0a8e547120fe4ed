"""Uploaded files: names, types, and how a file is shown (pure logic)."""

from __future__ import annotations

import mimetypes
import unicodedata
from urllib.parse import quote

OCTET = "application/octet-stream"
NAME_BYTES = 255  # what common file systems take for one name
ENCODED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def safe_filename(raw: str | None) -> str:
    """The name a file is stored and shown under: the last path segment (either
    separator), without control characters, at most 255 UTF-8 bytes (the extension
    kept); "file" when nothing is left."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(c for c in name if unicodedata.category(c) != "Cc").strip()
    if name in ("", ".", ".."):
        return "file"
    return _fit(name)


def _fit(name: str) -> str:
    if len(name.encode()) <= NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext.encode()) > 16:
        stem, ext = name, ""
    tail = f".{ext}" if ext else ""
    room = NAME_BYTES - len(tail.encode())
    return stem.encode()[:room].decode("utf-8", "ignore") + tail


def content_type_for(declared: str | None, filename: str) -> str:
    """The upload's own type if it gave one, else a guess from the name (a compressed
    file is typed as what it is, `x.csv.gz` as gzip)."""
    declared = (declared or "").strip()
    if declared:
        return declared
    kind, encoding = mimetypes.guess_type(filename)
    if encoding:
        return ENCODED.get(encoding, OCTET)
    return kind or OCTET


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name in RFC 5987 form."""
    ascii_name = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def file_resource(meta: dict) -> dict:
    return {
        "id": meta["id"],
        "object": "session.resource",
        "type": "file",
        "session_id": meta["session_id"],
        "name": meta["filename"],
        "metadata": {
            k: meta[k] for k in ("filename", "bytes", "content_type", "created_at", "sha256")
        },
    }
