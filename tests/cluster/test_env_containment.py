"""Containment: no environment route reads, writes, lists, diffs, searches or deletes
anything outside the environment root. Paths are sent raw (no client-side normalisation
of `..`, `//` or escapes), exactly as an attacker would."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.cluster.helpers import (
    env_url,
    error_code,
    launched,
    make_workspace,
    put_files,
    raw_get,
    raw_request,
)

SECRET = "top secret\n"


class Box:
    """base/ws (the root), base/outside, base/ws-evil (a sibling sharing the prefix)."""

    def __init__(self, world, sid: str, base: str) -> None:
        self.world, self.sid, self.base = world, sid, base
        self.ws = os.path.join(base, "ws")

    def raw(self, method: str, rest: str, body: bytes | None = None):
        return raw_request(
            self.world.server.url, self.world.server.token, method, env_url(self.sid, rest), body
        )

    def outside_state(self) -> dict:
        out = {}
        for d in ("outside", "ws-evil"):
            for name in sorted(os.listdir(os.path.join(self.base, d))):
                out[f"{d}/{name}"] = Path(self.base, d, name).read_bytes()
        return out


@pytest.fixture(scope="module")
def box(world):
    base = make_workspace(world.node_a.home, prefix="contain-")
    ws = os.path.join(base, "ws")
    put_files(
        base,
        {
            "ws/ok.txt": "ok\n",
            "ws/sub/target.txt": "target\n",
            "outside/secret.txt": SECRET,
            "ws-evil/secret": SECRET,
        },
    )
    links = {
        "out_file": os.path.join(base, "outside", "secret.txt"),  # file outside
        "out_dir": os.path.join(base, "outside"),  # directory outside
        "dangle": os.path.join(base, "outside", "not-yet.txt"),  # dangling, outside
        "evil": "../ws-evil/secret",  # sibling with the prefix
        "evild": "../ws-evil",
        "in_link": "sub/target.txt",  # stays inside
        "in_dir": "sub",
        "abs_in": os.path.join(ws, "sub"),  # absolute, inside
        "up_in": "../ws/ok.txt",  # leaves and comes back
    }
    for name, target in links.items():
        os.symlink(target, os.path.join(ws, name))
    sid = launched(world.alice, world.host_a, ws)
    yield Box(world, sid, base)
    world.alice.delete(f"/v1/sessions/{sid}")


BAD_PATHS = [
    "%00",
    "a%00b",
    "sub/%00",
    "ok.txt%00.png",  # NUL
    "/etc/passwd",
    "/" + "ok.txt",  # absolute (a leading slash)
    "..",
    "../..",
    "../../../../etc/passwd",
    "../ws-evil/secret",
    "sub/../../outside",
    "%2E%2E",
    "%2e%2e/outside/secret.txt",
    "..%2F..%2Fetc",
    "..%2Foutside%2Fsecret.txt",
    "sub/..%2F..%2Foutside",
    "out_file",
    "out_dir",
    "out_dir/secret.txt",
    "out_dir/new.txt",
    "dangle",
    "evil",
    "evild",
    "evild/secret",
    "evild/new.txt",
]


@pytest.mark.parametrize("rel", BAD_PATHS)
def test_escaping_paths_are_400_on_every_route(box, rel):
    before = box.outside_state()
    calls = [
        ("GET", f"/filesystem/{rel}", None),  # read / list
        ("PUT", f"/filesystem/{rel}", b'{"content": "pwned"}'),  # write
        ("PATCH", f"/filesystem/{rel}", b'{"old_text": "top", "new_text": "x"}'),  # edit
        ("DELETE", f"/filesystem/{rel}?recursive=true", None),  # delete
        ("GET", f"/diff/{rel}", None),  # diff
        ("GET", f"/search/{rel}?q=e", None),  # search under
    ]
    wrong = {}
    for method, rest, body in calls:
        status, answer = box.raw(method, rest, body)
        code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
        if status != 400 or code != "invalid_path":
            wrong[f"{method} {rest}"] = (status, answer)
    assert not wrong, wrong
    assert box.outside_state() == before
    assert not os.path.lexists(os.path.join(box.base, "outside", "not-yet.txt"))
    assert not os.path.exists(os.path.join(box.base, "outside", "new.txt"))
    assert not os.path.exists(os.path.join(box.base, "ws-evil", "new.txt"))


def test_raw_get_helper_agrees(box, world):
    """The helper from the brief: raw `..` and a leading slash after filesystem/."""
    for raw in (
        "/filesystem/../../etc/passwd",
        "/filesystem//etc/passwd",
        "/filesystem/sub/../../outside/secret.txt",
    ):
        status, body = raw_get(world.server.url, world.server.token, env_url(box.sid, raw))
        assert status == 400 and body["error"]["code"] == "invalid_path", (raw, body)


def test_dangling_symlink_write_creates_nothing_outside(box):
    for body in (b'{"content": "pwned"}', b'{"content": "cHduZWQ=", "encoding": "base64"}'):
        status, answer = box.raw("PUT", "/filesystem/dangle", body)
        assert status == 400 and answer["error"]["code"] == "invalid_path", answer
    assert not os.path.lexists(os.path.join(box.base, "outside", "not-yet.txt"))
    assert os.path.islink(os.path.join(box.ws, "dangle"))


def test_paths_that_stay_inside_work(box):
    # `..` that stays inside the root
    status, body = box.raw("GET", "/filesystem/sub/../ok.txt")
    assert status == 200 and body["content"] == "ok\n", body
    # symlinks whose real path is inside: read, list, and write through them
    status, body = box.raw("GET", "/filesystem/in_link")
    assert status == 200 and body["content"] == "target\n", body
    status, body = box.raw("GET", "/filesystem/abs_in/target.txt")
    assert status == 200 and body["content"] == "target\n", body
    status, body = box.raw("GET", "/filesystem/up_in")
    assert status == 200 and body["content"] == "ok\n", body
    status, body = box.raw("GET", "/filesystem/in_dir")
    assert status == 200 and "in_dir/target.txt" in [e["id"] for e in body["data"]], body

    status, body = box.raw("PUT", "/filesystem/in_link", b'{"content": "via link\\n"}')
    assert status == 200, body
    assert Path(box.ws, "sub/target.txt").read_text() == "via link\n"
    assert os.path.islink(os.path.join(box.ws, "in_link"))  # still a link
    status, body = box.raw("PUT", "/filesystem/in_dir/made.txt", b'{"content": "m"}')
    assert status == 200, body
    assert Path(box.ws, "sub/made.txt").read_text() == "m"
    status, body = box.raw(
        "PATCH", "/filesystem/in_link", b'{"old_text": "via", "new_text": "through"}'
    )
    assert status == 200, body
    assert Path(box.ws, "sub/target.txt").read_text() == "through link\n"
    status, body = box.raw("GET", "/search/in_dir?q=made")
    assert status == 200 and [e["path"] for e in body["data"]] == ["in_dir/made.txt"], body
    # deleting a symlink deletes the link, never what it points to (even recursive)
    status, body = box.raw("DELETE", "/filesystem/in_dir?recursive=true")
    assert status == 200, body
    assert not os.path.lexists(os.path.join(box.ws, "in_dir"))
    assert sorted(os.listdir(os.path.join(box.ws, "sub"))) == ["made.txt", "target.txt"]


def test_listing_and_search_do_not_leak_outside(box):
    status, body = box.raw("GET", "/filesystem?limit=100")
    assert status == 200, body
    by_id = {e["id"]: e for e in body["data"]}
    # links leaving the root show nothing of their target
    assert by_id.get("out_file", {}).get("bytes") is None
    assert by_id.get("evil", {}).get("bytes") is None
    status, body = box.raw("GET", "/search?q=e&limit=500")
    assert status == 200, body
    paths = [e["path"] for e in body["data"]]
    leaked = [
        p for p in paths if p.split("/")[0] in ("out_file", "out_dir", "dangle", "evil", "evild")
    ]
    assert not leaked, paths
    assert "sub/target.txt" in paths
    status, body = box.raw("GET", "/search?q=secret")
    assert status == 200 and body["data"] == [], body


def test_symlinked_root(world):
    base = make_workspace(world.node_a.home, prefix="linkroot-")
    put_files(base, {"real/f.txt": "inside\n", "real-sibling/secret": SECRET})
    link = os.path.join(base, "rootlink")
    os.symlink(os.path.join(base, "real"), link)
    # a link inside the root that goes through the symlinked root's own path
    os.symlink(os.path.join(link, "f.txt"), os.path.join(base, "real", "via-root-link"))
    sid = launched(world.alice, world.host_a, link)
    try:
        r = world.alice.get(env_url(sid))
        assert r.json()["metadata"]["root"] == os.path.join(base, "real"), r.text
        r = world.alice.get(env_url(sid, "/filesystem/f.txt"))
        assert r.status_code == 200 and r.json()["content"] == "inside\n", r.text
        r = world.alice.get(env_url(sid, "/filesystem/via-root-link"))
        assert r.status_code == 200 and r.json()["content"] == "inside\n", r.text
        r = world.alice.put(env_url(sid, "/filesystem/new.txt"), json={"content": "n"})
        assert r.status_code == 200 and Path(base, "real", "new.txt").read_text() == "n"
        for raw in (
            "../real-sibling/secret",
            "../rootlink/f.txt",
            "..",
            "../real",
            "%2E%2E%2Freal-sibling%2Fsecret",
        ):
            for method, body in (("GET", None), ("PUT", b'{"content": "pwned"}')):
                status, answer = raw_request(
                    world.server.url,
                    world.server.token,
                    method,
                    env_url(sid, "/filesystem/" + raw),
                    body,
                )
                assert status == 400 and answer["error"]["code"] == "invalid_path", (
                    method,
                    raw,
                    answer,
                )
        assert Path(base, "real-sibling", "secret").read_text() == SECRET
        assert Path(base, "real", "f.txt").read_text() == "inside\n"
        assert sorted(os.listdir(base)) == ["real", "real-sibling", "rootlink"]
    finally:
        world.alice.delete(f"/v1/sessions/{sid}")


def test_sibling_sharing_the_prefix_is_outside(world):
    """root /x/ws, sibling /x/ws-evil: a string-prefix check would let ws-evil in."""
    base = make_workspace(world.node_a.home, prefix="prefix-")
    put_files(base, {"ws/a.txt": "a", "ws-evil/secret": SECRET, "wsx/secret": SECRET})
    os.symlink("../ws-evil/secret", os.path.join(base, "ws", "s1"))
    os.symlink(os.path.join(base, "ws-evil"), os.path.join(base, "ws", "d1"))
    os.symlink("../wsx", os.path.join(base, "ws", "d2"))
    sid = launched(world.alice, world.host_a, os.path.join(base, "ws"))
    try:
        for rel in ("s1", "d1", "d1/secret", "d2/secret", "d1/new.txt"):
            r = world.alice.get(env_url(sid, f"/filesystem/{quote(rel)}"))
            assert r.status_code == 400 and error_code(r) == "invalid_path", (rel, r.text)
            r = world.alice.put(env_url(sid, f"/filesystem/{quote(rel)}"), json={"content": "x"})
            assert r.status_code == 400 and error_code(r) == "invalid_path", (rel, r.text)
        assert Path(base, "ws-evil", "secret").read_text() == SECRET
        assert sorted(os.listdir(os.path.join(base, "ws-evil"))) == ["secret"]
    finally:
        world.alice.delete(f"/v1/sessions/{sid}")


def test_escapes_are_decoded_once(box):
    """`%252E%252E%252F…` is a file literally named `%2E%2E%2F…` inside the root: the
    path is decoded once, never twice (a second decoding would make it `../…`)."""
    name = "%2E%2E%2Foutside%2Fsecret.txt"
    status, body = box.raw("GET", "/filesystem/" + name.replace("%", "%25"))
    assert status == 404 and body["error"]["code"] == "path_not_found", body
    status, body = box.raw(
        "PUT", "/filesystem/" + name.replace("%", "%25"), b'{"content": "literal"}'
    )
    assert status == 200 and body["path"] == name, body
    assert Path(box.ws, name).read_text() == "literal"
    assert Path(box.base, "outside", "secret.txt").read_text() == SECRET
    os.unlink(os.path.join(box.ws, name))


def test_symlink_loops_fail_cleanly(box):
    """A link that points at itself (or a cycle) names nothing that can be read or
    written: an error in the contract's shape (a 4xx, or 502 host_io_error), never an
    unhandled 500, nothing replaced, and the session keeps answering normally after it."""
    os.symlink("loop", os.path.join(box.ws, "loop"))
    os.symlink("cyc2", os.path.join(box.ws, "cyc1"))
    os.symlink("cyc1", os.path.join(box.ws, "cyc2"))
    try:
        wrong = {}
        for rel in ("loop", "cyc1", "loop/x"):
            for method, body in (
                ("GET", None),
                ("PUT", b'{"content": "x"}'),
                ("PATCH", b'{"old_text": "a", "new_text": "b"}'),
                ("DELETE", None),
                ("GET", None),
            ):
                if method == "DELETE" and rel != "loop/x":
                    continue  # deleting the link itself is fine
                status, answer = box.raw(method, f"/filesystem/{rel}", body)
                code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
                if not (400 <= status < 500 and code) and (status, code) != (502, "host_io_error"):
                    wrong[f"{method} {rel}"] = (status, answer)
                # whatever that answer was, the next request is served as usual
                status, answer = box.raw("GET", "/filesystem/ok.txt")
                if status != 200:
                    wrong[f"GET ok.txt after {method} {rel}"] = (status, answer)
        assert not wrong, wrong
        assert os.readlink(os.path.join(box.ws, "loop")) == "loop"
        assert os.readlink(os.path.join(box.ws, "cyc1")) == "cyc2"
    finally:
        for name in ("loop", "cyc1", "cyc2"):
            if os.path.lexists(os.path.join(box.ws, name)):
                os.unlink(os.path.join(box.ws, name))


# --- paths the kernel would refuse: 400 before the disk is touched ------------------------

LONG = "a/" * 3000 + "f.txt"  # 6,005 bytes: over PATH_MAX (4096)
TOO_LONG = [LONG, "x" * 256, "sub/" + "y" * 300 + "/z.txt", "é" * 128]  # NAME_MAX: 255 bytes


@pytest.mark.parametrize(
    "rel", TOO_LONG, ids=["3000-segments", "256-byte-name", "300-byte-dir", "256-bytes-of-utf8"]
)
def test_too_long_paths_are_400_on_every_route(box, rel):
    esc = quote(rel)
    calls = [
        ("GET", f"/filesystem/{esc}", None),
        ("PUT", f"/filesystem/{esc}", b'{"content": "x"}'),
        ("PATCH", f"/filesystem/{esc}", b'{"old_text": "a", "new_text": "b"}'),
        ("DELETE", f"/filesystem/{esc}?recursive=true", None),
        ("GET", f"/diff/{esc}", None),
        ("GET", f"/search/{esc}?q=e", None),
    ]
    wrong = {}
    for method, rest, body in calls:
        status, answer = box.raw(method, rest, body)
        err = answer.get("error", {}) if isinstance(answer, dict) else {}
        if (
            status != 400
            or err.get("code") != "invalid_path"
            or "too long" not in err.get("message", "")
            or len(err["message"]) > 300
        ):
            wrong[method + " " + rest[:40]] = (status, str(answer)[:300])
    assert not wrong, wrong
    assert not os.path.lexists(os.path.join(box.ws, "a"))  # nothing of LONG was made


def test_deep_paths_within_the_limits_work(box):
    """1,900 segments (3.8 KB with the root): fine for the kernel, so for us too."""
    rel = "deep/" + "a/" * 1900 + "f.txt"
    assert len(os.path.join(box.ws, rel)) < 4096
    try:
        status, body = box.raw("PUT", f"/filesystem/{rel}", b'{"content": "deep"}')
        assert status == 200 and body["created"] is True, (status, str(body)[:300])
        status, body = box.raw("GET", f"/filesystem/{rel}")
        assert status == 200 and body["content"] == "deep", (status, str(body)[:300])
        status, body = box.raw("DELETE", "/filesystem/deep?recursive=true")
        assert status == 200 and body["entries_deleted"] == 1902, (status, str(body)[:300])
        assert not os.path.exists(os.path.join(box.ws, "deep"))
    finally:
        if os.path.isdir(os.path.join(box.ws, "deep")):
            from omnigent.env.fsops import _rmtree

            _rmtree(os.path.join(box.ws, "deep"))
