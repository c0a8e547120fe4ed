"""Schema fuzzing: schemathesis (`st run`, every phase: examples, coverage, fuzzing,
stateful with inferred links; every check) against a real running server's own
`GET /openapi.json`, with a bearer token, and a session bound to a runner on the server's
host, so resource routes reach their handlers: path parameters are filled with real ids
(session, host, runner, terminal, file, the `default` environment). Destructive
operations get ids of their own (a spare session, terminal and file), so the bound
session keeps its resources for the other operations.

Bounded for 2 cores: 1 worker, `FUZZ_EXAMPLES` examples per operation (default 20),
deterministic, stateful runs of at most 20 steps, health checks that only say "slow"
suppressed. The token travels in the environment (`${OMNI_FUZZ_TOKEN}` in the config),
never on a command line. tests/contract/fuzz_hooks.py keeps launches, terminals and
shell commands harmless.

On failure the message is a summary of the failures, grouped by check and operation,
most common first; the full schemathesis output, the summary and the JSON and JUnit
reports are kept in the test's tmp dir (the path is printed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.cluster.helpers import make_workspace, new_session

pytestmark = [pytest.mark.cluster, pytest.mark.fuzz]

HERE = Path(__file__).resolve().parent
ST = Path(sys.executable).parent / "st"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))


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


def config_text(ids: dict, spare: dict | None, report_dir: Path, max_response_time: float) -> str:
    """schemathesis.toml for one run: `ids` fill path parameters everywhere, `spare` ones
    those of the destructive operations (None: no per-operation ids)."""

    def op(path, method, **params):
        return (
            "\n[[operations]]\n"
            f"include-name = {_toml(f'{method} {path}')}\n"  # one exact operation
            f"parameters = {_toml({f'path.{k}': v for k, v in params.items()})}\n"
        )

    res = "/v1/sessions/{session_id}/resources"
    lines = [
        "workers = 1",
        "seed = 20260101",
        'suppress-health-check = ["too_slow", "filter_too_much", "large_base_example"]',
        "request-timeout = 90",
        "continue-on-failure = true",
        f"hooks = {_toml(str(HERE / 'fuzz_hooks.py'))}",
        'headers = {Authorization = "Bearer ${OMNI_FUZZ_TOKEN}"}',
        "[generation]",
        f"max-examples = {EXAMPLES}",
        "deterministic = true",
        'mode = "all"',
        'database = "none"',
        "[checks]",
        "enabled = true",
        f"max_response_time = {max_response_time}",
        "[phases.stateful]",
        "max-steps = 20",
        'inference = {algorithms = ["location-headers", "dependency-analysis"]}',
        "[reports]",
        f"directory = {_toml(str(report_dir))}",
        "[reports.json]",
        "enabled = true",
        "[reports.junit]",
        "enabled = true",
        "[reports.har]",
        f"enabled = {_toml(bool(os.environ.get('FUZZ_HAR')))}",
        "[parameters]",
    ]
    lines += [f"{json.dumps('path.' + k)} = {_toml(v)}" for k, v in ids.items()]
    text = "\n".join(lines) + "\n"
    # Rules that depend on the server's state, not on the request's shape, which CONTRACT.md
    # answers with 400 and no schema can express: a terminal name the session's agent spec
    # does not declare (`terminal_not_declared`), and git options against the workspace's
    # repository as it is (a branch that exists, an unknown base, not a repository).
    accept = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
    for method, path, code in (
        ("POST", res + "/terminals", "terminal_not_declared"),
        ("POST", "/v1/sessions", "git state"),
        ("POST", "/v1/hosts/{host_id}/runners", "git state"),
    ):
        text += (
            "\n[[operations]]\n"
            f"include-name = {_toml(f'{method} {path}')}  # 400: {code}\n"
            "checks = {positive_data_acceptance = {expected-statuses = "
            f"{_toml(accept + ['400'])}}}}}\n"
        )
    if spare is None:
        return text
    text += op("/v1/sessions/{session_id}", "DELETE", session_id=spare["session_id"])
    for tail in ("/terminals/{terminal_id}", "/terminals/{terminal_id}/transfer"):
        text += op(
            res + tail, "DELETE" if tail.endswith("}") else "POST", terminal_id=spare["terminal_id"]
        )
    text += op(res + "/files/{file_id}", "DELETE", file_id=spare["file_id"])
    return text


@pytest.fixture
def targets(live):
    """Real ids for the path parameters, and spare ones for the destructive operations."""
    http, sid = live.http, live.session_id

    def terminal(key: str) -> str:
        r = http.post(
            f"/v1/sessions/{sid}/resources/terminals",
            json={"terminal": "shell", "session_key": key},
        )
        assert r.status_code in (200, 201), r.text
        return r.json()["id"]

    def upload(name: str) -> str:
        r = http.post(
            f"/v1/sessions/{sid}/resources/files", files={"file": (name, b"fuzz\n", "text/plain")}
        )
        assert r.status_code == 201, r.text
        return r.json()["id"]

    ids = {
        "session_id": sid,
        "host_id": live.host_id,
        "runner_id": live.runner_id,
        "terminal_id": terminal("fuzz"),
        "file_id": upload("fuzz.txt"),
        "resource_id": "default",
        "environment_id": "default",
        "env_id": "default",
    }
    spare = {
        "session_id": new_session(http, title="spare")["id"],
        "terminal_id": terminal("spare"),
        "file_id": upload("spare.txt"),
    }
    return ids, spare


def failures_of(text: str) -> list[tuple[str, str]]:
    """(check, one-line cause) for each check failed in a JUnit failure text (it may hold
    several test cases, `1. Test Case ID: …`, each failing several checks, `- ST… title`)."""
    out = []
    for section in re.split(r"^\d+\. Test Case ID: \S+\s*$", text, flags=re.M):
        status = re.search(r"^\[(\d{3})\][^\n]*", section, re.M)
        code = re.search(r'"code": ?"([^"]+)"', section)
        got = (status.group(1) if status else "") + (f" {code.group(1)}" if code else "")
        head = section[: status.start()] if status else section
        titles = list(re.finditer(r"^- (ST\d+ [^\n]+)$", head, re.M))
        for i, title in enumerate(titles):
            end = titles[i + 1].start() if i + 1 < len(titles) else len(head)
            detail = next(
                (x.strip() for x in head[title.end() : end].splitlines() if x.strip()), ""
            )
            cause = "; ".join(x for x in (detail, f"got {got}" if got else "") if x)
            out.append((title.group(1).strip(), " ".join(cause.split())[:200]))
    return out


def summarize(junit: Path) -> list[str]:
    """One line per (check, operation), the checks failing most often first:
    `check | operation | count | first cause`."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        for failure in case.iter("failure"):
            for check, cause in failures_of(failure.text or ""):
                groups[(check, case.get("name", "?"))].append(cause)
    per_check = Counter()
    for (check, _), causes in groups.items():
        per_check[check] += len(causes)
    ordered = sorted(
        groups.items(), key=lambda kv: (-per_check[kv[0][0]], kv[0][0], -len(kv[1]), kv[0][1])
    )
    return [f"{check} | {op} | x{len(causes)} | {causes[0]}" for (check, op), causes in ordered]


def run_st(
    live, tmp_path: Path, name: str, phases: str, ids: dict, spare: dict | None, workspace: str
) -> tuple[int, list[str]]:
    """`st run` over `phases`; its exit code and failure summary (files under tmp/name)."""
    out_dir = tmp_path / name
    out_dir.mkdir()
    cfg = out_dir / "schemathesis.toml"
    cfg.write_text(config_text(ids, spare, out_dir / "report", max_response_time=30))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEMATHESIS_", "RAY_"))}
    env.update(
        OMNI_FUZZ_TOKEN=live.token,
        OMNI_FUZZ_WORKSPACE=workspace,
        NO_COLOR="1",
        HOME=str(out_dir),
        NO_PROXY="*",
    )
    argv = [
        str(ST),
        "--config-file",
        str(cfg),
        "--no-color",
        "run",
        "--phases",
        phases,
        f"{live.url}/openapi.json",
    ]
    out = subprocess.run(
        argv, env=env, cwd=str(out_dir), capture_output=True, text=True, timeout=1200
    )
    (out_dir / "st-output.txt").write_text(out.stdout + out.stderr)
    assert out.returncode in (0, 1), (
        f"st run crashed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    )
    junit = sorted((out_dir / "report").glob("junit*.xml"))
    summary = summarize(junit[-1]) if junit else []
    if out.returncode and not summary:
        summary = [f"{name}: see {out_dir / 'st-output.txt'}"]
    return out.returncode, summary


def test_schema_fuzz(live, targets, tmp_path):
    """Two runs: examples, coverage and fuzzing with the real ids in every path; then the
    stateful phase, where ids come from the links schemathesis infers (a configured value
    would override the id a link supplies), only the host and `default` fixed."""
    if not ST.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    ids, spare = targets
    workspace = make_workspace(live.server.home, {"a.txt": "a\n"}, prefix="fuzz-ws-")
    rc1, summary = run_st(
        live, tmp_path, "generated", "examples,coverage,fuzzing", ids, spare, workspace
    )
    # the bound session kept its runner through the whole run
    s = live.http.get(f"/v1/sessions/{ids['session_id']}").json()
    assert s.get("status") == "running", s
    fixed = {k: ids[k] for k in ("host_id", "environment_id", "resource_id")}
    rc2, stateful = run_st(live, tmp_path, "stateful", "stateful", fixed, None, workspace)
    summary += stateful
    (tmp_path / "summary.txt").write_text("\n".join(summary) + "\n")
    if rc1 == rc2 == 0:
        return
    pytest.fail(
        f"schemathesis found failures (outputs and reports under {tmp_path}):\n"
        + "\n".join(summary),
        pytrace=False,
    )
