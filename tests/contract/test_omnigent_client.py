"""Omnigent's own published Python client (`omnigent_client`, from `omnigent==0.19.0`)
against our real server: a session bound to a runner on a real host (the server's own
machine), the files namespace end to end (upload, list, get, get_content, download,
delete) and the sessions namespace calls our API has (get, list with its paging and
sorting parameters).

The client needs Python >= 3.12, so it runs in a cached venv (tests/contract/clientvenv.py)
as a subprocess (tests/contract/client_script.py), given URL, token and ids in its
environment (never on a command line); its JSON lines are judged here. No Python >= 3.12
on the machine → skipped.

The client's field requirements are in its source: `Session.from_dict`
(`omnigent_client/_sessions.py:207-241`: `id`, `agent_id`, `status`, `created_at`) and
`SessionListItem.from_dict` (`:302-327`: the same plus `updated_at`); files through
`SessionFilesNamespace._resource_to_file` (`_files.py:125-141`: `id`,
`metadata.filename|bytes|created_at`).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.contract.clientvenv import CLIENT_VERSION, client_python

pytestmark = [pytest.mark.cluster, pytest.mark.client]

SCRIPT = os.path.join(os.path.dirname(__file__), "client_script.py")


@pytest.fixture(scope="module")
def run(live, tmp_path_factory):
    """Run the client script once; {step: entry}, plus what the server says."""
    python = client_python()
    work = tmp_path_factory.mktemp("omnigent-client")
    home = tmp_path_factory.mktemp("omnigent-client-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "NO_PROXY": "*",
        "OMNI_URL": live.url,
        "OMNI_TOKEN": live.token,
        "OMNI_SESSION_ID": live.session_id,
        "OMNI_IDLE_SESSION_ID": live.idle_session_id,
        "OMNI_WORKDIR": str(work),
    }
    out = subprocess.run(
        [python, "-I", SCRIPT], env=env, capture_output=True, text=True, timeout=300, cwd=str(work)
    )
    steps = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            steps[entry["step"]] = entry
    assert out.returncode == 0 and "sessions.get unknown" in steps, (
        f"client script failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    )
    return steps


def ok(run, name):
    entry = run[name]
    assert entry["ok"], f"omnigent_client {CLIENT_VERSION}, {name}: {entry['error']}"
    return entry["value"]


def failed(run, name, status):
    entry = run[name]
    assert not entry["ok"], f"{name}: expected HTTP {status}, the call returned {entry['value']}"
    err = entry["error"]
    assert err["status_code"] == status, f"{name}: {err}"
    assert err["type"] not in ("KeyError", "TypeError", "ValueError"), err
    return err


# --- files ---------------------------------------------------------------------------------


def test_files_upload(run, live):
    inputs, ids = run["inputs"]["value"], run["ids"]["value"]
    for name in ("notes.txt", "blob.bin"):
        f = ok(run, f"files.upload {name}")
        assert f["id"].startswith("file_") and f["id"] == ids[name]
        assert f["filename"] == name
        assert f["bytes"] == inputs[name]["bytes"]
        assert isinstance(f["created_at"], int) and f["created_at"] > 1_600_000_000
        # what the server itself says of it
        r = live.http.get(f"/v1/sessions/{live.session_id}/resources/files/{f['id']}")
        if name == "blob.bin":  # notes.txt is deleted later on; the order is not fixed
            assert r.status_code == 200, r.text
            assert r.json()["metadata"]["sha256"] == inputs[name]["sha256"]


def test_files_list(run):
    ids = run["ids"]["value"]
    listed = ok(run, "files.list")
    assert [f["id"] for f in listed] == [ids["blob.bin"], ids["notes.txt"]]  # newest first
    assert {f["filename"] for f in listed} == {"blob.bin", "notes.txt"}
    assert all(f["bytes"] > 0 and f["created_at"] > 0 for f in listed)
    assert [f["id"] for f in ok(run, "files.list asc")] == [ids["notes.txt"], ids["blob.bin"]]
    assert [f["id"] for f in ok(run, "files.list limit 1")] == [ids["blob.bin"]]
    assert [f["id"] for f in ok(run, "files.list after")] == [ids["notes.txt"]]


def test_files_get(run):
    ids, inputs = run["ids"]["value"], run["inputs"]["value"]
    f = ok(run, "files.get")
    assert f == ok(run, "files.upload blob.bin")
    assert f["id"] == ids["blob.bin"] and f["bytes"] == inputs["blob.bin"]["bytes"]


def test_files_get_content_and_download(run):
    want = run["inputs"]["value"]["blob.bin"]
    assert ok(run, "files.get_content") == want
    d = ok(run, "files.download")
    assert d["path"] == d["target"]
    assert {"bytes": d["bytes"], "sha256": d["sha256"]} == want


def test_files_delete(run):
    ids = run["ids"]["value"]
    assert ok(run, "files.delete") is None
    failed(run, "files.get deleted", 404)
    failed(run, "files.get_content deleted", 404)
    failed(run, "files.delete deleted", 404)
    assert [f["id"] for f in ok(run, "files.list after delete")] == [ids["blob.bin"]]


def test_files_not_found(run):
    failed(run, "files.get unknown", 404)
    failed(run, "files.list unknown session", 404)
    failed(run, "files.get other session", 404)  # a file of another session


# --- sessions ------------------------------------------------------------------------------


def _server_session(live, sid):
    r = live.http.get(f"/v1/sessions/{sid}")
    assert r.status_code == 200, r.text
    return r.json()


def test_sessions_get(run, live):
    s = ok(run, "sessions.get")
    server = _server_session(live, live.session_id)
    assert s["id"] == live.session_id
    assert s["agent_id"].startswith("ag_")
    assert s["agent_name"] == server["agent"]["name"] == "test-agent"
    assert s["status"] == "running"
    assert s["title"] == "bound"
    assert s["runner_id"] == live.runner_id
    assert s["created_at"] == server["created_at"]
    assert isinstance(s["updated_at"], int) and s["updated_at"] >= s["created_at"]
    idle = ok(run, "sessions.get idle")
    assert idle["status"] == "idle" and idle["runner_id"] is None
    assert idle["agent_id"] == s["agent_id"]  # the same agent spec → the same agent id


def test_sessions_list(run, live):
    items = ok(run, "sessions.list")
    assert [x["id"] for x in items] == [live.session_id, live.idle_session_id]  # newest first
    bound = items[0]
    server = _server_session(live, live.session_id)
    assert bound["agent_id"].startswith("ag_")
    assert bound["status"] == "running"
    assert bound["created_at"] == server["created_at"]
    assert bound["updated_at"] >= bound["created_at"]
    assert bound["runner_id"] == live.runner_id
    assert bound["host_id"] == live.host_id
    assert bound["owner"] == server["owner"]
    assert bound["title"] == "bound"
    assert items[1]["runner_id"] is None and items[1]["host_id"] is None


def test_sessions_list_pages(run, live):
    asc = [x["id"] for x in ok(run, "sessions.list asc")]
    assert asc == [live.idle_session_id, live.session_id]
    assert [x["id"] for x in ok(run, "sessions.list limit 1")] == [live.session_id]
    assert [x["id"] for x in ok(run, "sessions.list after")] == [live.idle_session_id]
    assert [x["id"] for x in ok(run, "sessions.list before")] == [live.session_id]
    by_update = [x["id"] for x in ok(run, "sessions.list sort_by updated_at")]
    assert sorted(by_update) == sorted([live.session_id, live.idle_session_id])


def test_sessions_errors(run):
    failed(run, "sessions.get unknown", 404)
    err = failed(run, "sessions.list limit 0", 422)
    assert err["code"] == "validation_error"
