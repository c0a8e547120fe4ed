"""Uploaded files, the pure part (omnigent/domain/files.py): the name a file is shown and
downloaded under, the type it is served with, its Content-Disposition and resource shape."""

from __future__ import annotations

import os
import re
import unicodedata
from urllib.parse import unquote

import pytest

from omnigent.domain.files import (
    content_disposition,
    content_type_for,
    file_resource,
    safe_filename,
)

# --- safe_filename ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("data.csv", "data.csv"),
        ("dir/sub/data.csv", "data.csv"),
        ("/etc/passwd", "passwd"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\win.ini", "win.ini"),
        ("C:\\Users\\eve\\report.pdf", "report.pdf"),
        ("mixed/dirs\\and/name.txt", "name.txt"),
        ("dir/..", "file"),
        ("..", "file"),
        (".", "file"),
        ("", "file"),
        (None, "file"),
        ("   ", "file"),
        ("dir/", "file"),
        ("  spaced name.txt  ", "spaced name.txt"),
        (".bashrc", ".bashrc"),
        ("a\x00b\nc\r\td\x1b[31m\x7f.txt", "abcd[31m.txt"),
        ("\x00\x01..\x02", "file"),  # nothing but ".." once the control characters are gone
        ('say "hi".txt', 'say "hi".txt'),  # quotes are fine in a name (the header escapes them)
        ("日本語 ファイル.txt", "日本語 ファイル.txt"),
    ],
)
def test_safe_filename(raw, expected):
    assert safe_filename(raw) == expected


def test_safe_filename_is_nfc():
    decomposed = "re\u0301sume\u0301.pdf"  # e + combining acute, as macOS file systems give
    out = safe_filename(decomposed)
    assert out == "r\u00e9sum\u00e9.pdf"
    assert unicodedata.is_normalized("NFC", out)
    assert safe_filename("dir/" + decomposed) == out


def test_safe_filename_never_keeps_a_separator_or_control_character():
    nasty = "".join(chr(c) for c in range(0x20)) + "a/b\\c" + "\x7f" + "..//..\\\\x.bin"
    out = safe_filename(nasty)
    assert out == "x.bin"
    for name in ["a/b", "a\\b", "/", "\\", "a\\", "x\x00/y"]:
        out = safe_filename(name)
        assert "/" not in out and "\\" not in out and "\x00" not in out and out


def test_safe_filename_drops_c1_control_characters_too():
    """NEL (U+0085) and the other C1 controls are control characters as much as \\n is:
    some terminals and UIs act on them; they do not belong in a shown name."""
    controls = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"]
    assert len(controls) == 65  # C0, DEL and C1
    for c in controls:
        assert safe_filename(f"a{c}b.txt") == "ab.txt", hex(ord(c))


def test_safe_filename_cuts_a_long_name_to_a_name_a_file_system_takes():
    """A user saves the download under this name: at most 255 bytes in UTF-8 (the limit of
    common file systems) and, where it can, with its extension (it says what the file is,
    and the type is guessed from it when the upload gave none)."""
    ascii_long = "x" * 300 + ".csv"
    out = safe_filename(ascii_long)
    assert len(out.encode()) <= 255
    assert out.endswith(".csv")
    assert out.startswith("xxxx")

    wide = "é" * 300 + ".png"
    out = safe_filename(wide)
    assert len(out.encode()) <= 255
    assert out.endswith(".png")
    assert out.encode().decode() == out  # not cut inside a character

    exact = "y" * 251 + ".txt"  # exactly 255: untouched
    assert safe_filename(exact) == exact


# --- content_type_for ------------------------------------------------------------------


@pytest.mark.parametrize(
    "declared, name, expected",
    [
        ("text/csv", "data.csv", "text/csv"),
        ("image/png", "no-extension", "image/png"),
        ("application/x-custom; v=2", "x.bin", "application/x-custom; v=2"),
        ("  image/png  ", "x", "image/png"),  # the declared type, trimmed
        ("application/octet-stream", "photo.png", "application/octet-stream"),  # declared wins
        (None, "data.csv", "text/csv"),
        (None, "photo.PNG", "image/png"),
        (None, "doc.pdf", "application/pdf"),
        (None, "x.json", "application/json"),
        ("", "photo.png", "image/png"),
        ("   ", "photo.png", "image/png"),
        (None, "README", "application/octet-stream"),
        (None, "weird.zzzunknown", "application/octet-stream"),
        (None, "", "application/octet-stream"),
    ],
)
def test_content_type_for(declared, name, expected):
    assert content_type_for(declared, name) == expected


@pytest.mark.parametrize("name", ["bundle.tar.gz", "table.csv.gz"])
def test_compressed_files_are_not_typed_as_what_they_decompress_to(name):
    """`report.csv.gz` holds gzip bytes, not CSV text: served as `text/csv`, a client
    would read binary garbage as text. The type must describe the stored bytes."""
    assert content_type_for(None, name) in {
        "application/gzip",
        "application/x-gzip",
        "application/octet-stream",
    }
    # a declared type is still taken as it is
    assert content_type_for("application/gzip", name) == "application/gzip"


# --- content_disposition ---------------------------------------------------------------


def _parse(header: str) -> tuple[str, dict]:
    """The disposition type and the parameters, quoted-string aware (RFC 6266)."""
    m = re.match(r"\s*([A-Za-z-]+)", header)
    assert m, header
    params, rest = {}, header[m.end() :]
    for p in re.finditer(r';\s*([A-Za-z*-]+)=("(?:[^"\\]|\\.)*"|[^;\s]*)', rest):
        key, value = p.group(1).lower(), p.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key] = value
    assert (
        "".join(
            x.group(0) for x in re.finditer(r';\s*([A-Za-z*-]+)=("(?:[^"\\]|\\.)*"|[^;\s]*)', rest)
        )
        == rest
    ), header
    return m.group(1).lower(), params


def _exact_name(header: str) -> str:
    """The name a client that reads RFC 6266 `filename*` sees."""
    value = _parse(header)[1]["filename*"]
    assert value.startswith("UTF-8''"), header
    encoded = value.removeprefix("UTF-8''")
    assert all(c.isascii() and (c.isalnum() or c in "%-._~") for c in encoded), encoded
    return unquote(encoded, encoding="utf-8", errors="strict")


@pytest.mark.parametrize(
    "name",
    [
        "data.csv",
        'say "hi".txt',
        "back\\slash.txt",
        "résumé.pdf",
        "日本語.txt",
        "semi;colon, comma.txt",
        "100% sure.txt",
        "tab\tname",
        "emoji 🎉.png",
        "a'b.txt",
        "x" * 255,
    ],
)
def test_content_disposition_round_trips_the_name(name):
    header = content_disposition(name)
    header.encode("ascii")  # a header is ASCII: no raw unicode, nothing to mangle
    assert "\r" not in header and "\n" not in header
    kind, params = _parse(header)
    assert kind == "attachment"
    assert header.startswith("attachment;")
    assert _exact_name(header) == name
    fallback = params["filename"]
    assert fallback.isascii() and '"' not in fallback and "\\" not in fallback
    assert len(fallback) == len(name)  # one placeholder per character it could not keep
    assert all(0x20 <= ord(c) < 0x7F for c in fallback)


def test_content_disposition_fallback_for_plain_ascii_is_the_name_itself():
    assert (
        content_disposition("data.csv")
        == "attachment; filename=\"data.csv\"; filename*=UTF-8''data.csv"
    )
    assert _parse(content_disposition("my report.pdf"))[1]["filename"] == "my report.pdf"


def test_content_disposition_quotes_and_unicode():
    header = content_disposition('a"b\\c é.txt')
    assert 'filename="a_b_c _.txt"' in header
    assert "filename*=UTF-8''a%22b%5Cc%20%C3%A9.txt" in header


# --- file_resource ---------------------------------------------------------------------


def test_file_resource_shape():
    meta = {
        "id": "file_0001",
        "session_id": "conv_1",
        "filename": "data.csv",
        "bytes": 4096,
        "content_type": "text/csv",
        "created_at": 1700000000,
        "sha256": "ab" * 32,
        "path": "/secret/server/path",
        "owner": "alice",
    }
    res = file_resource(meta)
    assert res == {
        "id": "file_0001",
        "object": "session.resource",
        "type": "file",
        "session_id": "conv_1",
        "name": "data.csv",
        "metadata": {
            "filename": "data.csv",
            "bytes": 4096,
            "content_type": "text/csv",
            "created_at": 1700000000,
            "sha256": "ab" * 32,
        },
    }
    # nothing of where the server keeps it leaks out
    assert "/secret" not in repr(res) and "alice" not in repr(res)
    assert "environment" not in res


def test_file_resource_name_is_the_filename():
    meta = {
        "id": "file_2",
        "session_id": "conv_2",
        "filename": "résumé.pdf",
        "bytes": 0,
        "content_type": "application/pdf",
        "created_at": 1,
        "sha256": "e3b0" + "0" * 60,
    }
    res = file_resource(meta)
    assert res["name"] == res["metadata"]["filename"] == "résumé.pdf"
    assert res["metadata"]["bytes"] == 0


def test_safe_filename_output_is_a_single_path_component():
    """Whatever the name, it never names a path outside a directory it is joined to."""
    for raw in ["../x", "..\\x", "a/../../b", "/", "x/.", "...", "..../x", "\\\\server\\s"]:
        out = safe_filename(raw)
        assert os.path.basename(out) == out and out not in ("", ".", "..")
        assert os.path.normpath(os.path.join("/base", out)).startswith("/base/")
