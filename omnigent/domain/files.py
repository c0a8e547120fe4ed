"""Uploaded files: names, types, and how a file is shown (pure logic)."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from urllib.parse import quote

OCTET = "application/octet-stream"
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def safe_filename(raw: str | None) -> str:
    """The name a file is stored and shown under: the last path segment (either
    separator), without control characters; "file" when nothing is left."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("", unicodedata.normalize("NFC", name)).strip()
    if name in ("", ".", ".."):
        return "file"
    return name[:255]


def content_type_for(declared: str | None, filename: str) -> str:
    """The upload's own type if it gave one, else a guess from the name."""
    declared = (declared or "").strip()
    if declared:
        return declared
    return mimetypes.guess_type(filename)[0] or OCTET


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name in RFC 5987 form."""
    ascii_name = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_"
                         for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def file_resource(meta: dict) -> dict:
    return {
        "id": meta["id"], "object": "session.resource", "type": "file",
        "session_id": meta["session_id"], "name": meta["filename"],
        "metadata": {k: meta[k] for k in ("filename", "bytes", "content_type",
                                          "created_at", "sha256")},
    }
