"""Schema fuzzing: schemathesis (`st run`, every phase: examples, coverage, fuzzing,
stateful with inferred links; every check) against a real running server's own
`GET /openapi.json`, with a bearer token, and a session bound to a runner on the server's
host, so resource routes reach their handlers: path parameters are filled with real ids
(session, host, runner, terminal, file, the `default` environment). Destructive
operations get ids of their own (a spare session, terminal and file), so the bound
session keeps its resources for the other operations.

Bounded for 2 cores: 1 worker, `FUZZ_EXAMPLES` examples per operation (default 10),
deterministic, stateful runs of at most 10 steps, health checks that only say "slow"
suppressed. The token travels in the environment (`${OMNI_FUZZ_TOKEN}` in the config),
never on a command line. tests/contract/fuzz_hooks.py keeps launches, terminals and
shell commands harmless.

On failure the message is a summary of the failures, grouped by check and operation,
most common first; the full schemathesis output and its JSON and JUnit reports are kept
in the test's tmp dir (the path is printed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.cluster.helpers import make_workspace, new_session

pytestmark = [pytest.mark.cluster, pytest.mark.fuzz]

HERE = Path(__file__).resolve().parent
ST = Path(sys.executable).parent / "st"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def config_text(ids: dict, spare: dict, report_dir: Path, max_response_time: float) -> str:
    """schemathesis.toml for the run."""
    def op(path, method, **params):
        return ("\n[[operations]]\n"
                f"include-path = {_toml(path)}\ninclude-method = {_toml(method)}\n"
                f"parameters = {_toml({f'path.{k}': v for k, v in params.items()})}\n")

    res = "/v1/sessions/{session_id}/resources"
    lines = [
        "workers = 1",
        "seed = 20260101",
        'suppress-health-check = ["too_slow", "filter_too_much", "large_base_example"]',
        "request-timeout = 90",
        f"hooks = {_toml(str(HERE / 'fuzz_hooks.py'))}",
        "[auth.openapi.bearerAuth]",
        'bearer = "${OMNI_FUZZ_TOKEN}"',
        "[generation]",
        f"max-examples = {EXAMPLES}",
        "deterministic = true",
        'mode = "all"',
        'database = "none"',
        "[checks]",
        "enabled = true",
        f"max_response_time = {max_response_time}",
        "[phases.examples]",
        "enabled = true",
        "[phases.coverage]",
        "enabled = true",
        "[phases.fuzzing]",
        "enabled = true",
        "[phases.stateful]",
        "enabled = true",
        "max-steps = 10",
        'inference = {algorithms = ["location-headers", "dependency-analysis"]}',
        "[reports]",
        f"directory = {_toml(str(report_dir))}",
        "[reports.json]",
        "enabled = true",
        "[reports.junit]",
        "enabled = true",
        "[parameters]",
    ]
    lines += [f"{json.dumps('path.' + k)} = {_toml(v)}" for k, v in ids.items()]
    text = "\n".join(lines) + "\n"
    text += op("/v1/sessions/{session_id}", "DELETE", session_id=spare["session_id"])
    for tail in ("/terminals/{terminal_id}", "/terminals/{terminal_id}/transfer"):
        text += op(res + tail, "DELETE" if tail.endswith("}") else "POST",
                   terminal_id=spare["terminal_id"])
    text += op(res + "/files/{file_id}", "DELETE", file_id=spare["file_id"])
    return text


@pytest.fixture
def targets(live):
    """Real ids for the path parameters, and spare ones for the destructive operations."""
    http, sid = live.http, live.session_id

    def terminal(key: str) -> str:
        r = http.post(f"/v1/sessions/{sid}/resources/terminals",
                      json={"terminal": "shell", "session_key": key})
        assert r.status_code in (200, 201), r.text
        return r.json()["id"]

    def upload(name: str) -> str:
        r = http.post(f"/v1/sessions/{sid}/resources/files",
                      files={"file": (name, b"fuzz\n", "text/plain")})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    ids = {"session_id": sid, "host_id": live.host_id, "runner_id": live.runner_id,
           "terminal_id": terminal("fuzz"), "file_id": upload("fuzz.txt"),
           "resource_id": "default", "environment_id": "default", "env_id": "default"}
    spare = {"session_id": new_session(http, title="spare")["id"],
             "terminal_id": terminal("spare"), "file_id": upload("spare.txt")}
    return ids, spare


def summarize(report: dict) -> list[str]:
    """One line per (check, operation): count, and the first failure's one-line cause."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for op in report.get("operations", []):
        label = op.get("label") or op.get("operation") or "?"
        for failure in op.get("failures", []):
            check = failure.get("check") or failure.get("code") or failure.get("title") or "?"
            cause = (failure.get("title") or failure.get("message") or "").strip()
            groups[(check, label)].append(" ".join(cause.split())[:160])
    by_check = Counter({check: 0 for check, _ in groups})
    for (check, _), causes in groups.items():
        by_check[check] += len(causes)
    lines = []
    for check, _ in by_check.most_common():
        for (c, label), causes in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            if c == check:
                lines.append(f"{check} | {label} | x{len(causes)} | {causes[0]}")
    return lines


def test_schema_fuzz(live, targets, tmp_path):
    if not ST.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    ids, spare = targets
    report_dir = tmp_path / "report"
    workspace = make_workspace(live.server.home, {"a.txt": "a\n"}, prefix="fuzz-ws-")
    cfg = tmp_path / "schemathesis.toml"
    cfg.write_text(config_text(ids, spare, report_dir, max_response_time=30))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEMATHESIS_", "RAY_"))}
    env.update(OMNI_FUZZ_TOKEN=live.token, OMNI_FUZZ_WORKSPACE=workspace, NO_COLOR="1",
               HOME=str(tmp_path), NO_PROXY="*")
    argv = [str(ST), "--config-file", str(cfg), "--no-color", "run",
            f"{live.url}/openapi.json"]
    out = subprocess.run(argv, env=env, cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=1500)
    (tmp_path / "st-output.txt").write_text(out.stdout + out.stderr)
    reports = sorted(report_dir.glob("*.json"))
    assert out.returncode in (0, 1), (
        f"st run crashed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    # the bound session kept its runner through the whole run
    s = live.http.get(f"/v1/sessions/{ids['session_id']}").json()
    assert s.get("status") == "running", s
    if out.returncode == 0:
        return
    summary = summarize(json.loads(reports[-1].read_text())) if reports else []
    pytest.fail(f"schemathesis found failures (full output: {tmp_path / 'st-output.txt'}):\n"
                + "\n".join(summary or [out.stdout[-6000:]]), pytrace=False)
