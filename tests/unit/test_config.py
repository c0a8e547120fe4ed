"""Settings: read from the environment once (from_env), validated, and passed across Ray
as a dict that the other side takes as it is, whatever its own environment says."""

from __future__ import annotations

import inspect
import json
import math
import os
import pickle
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from actors.runner import RunnerActor
from omnigent import cli
from omnigent.config import (
    DEFAULT_PORT,
    NOT_FROM_ENV,
    Settings,
    describe_error,
    env_name,
    source_digest,
)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No OMNIGENT_* variable of the developer's shell, and a HOME of the test's own."""
    import os

    for name in list(os.environ):
        if name.startswith("OMNIGENT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))


def test_defaults_from_a_clean_environment(tmp_path):
    s = Settings.from_env()
    assert s.state_dir == str(tmp_path / ".omnigent")
    assert (s.host, s.port) == ("127.0.0.1", DEFAULT_PORT)
    assert (s.session_idle_s, s.file_cap_bytes, s.max_terminals) == (30.0, 1024**3, 16)
    assert (s.runner_pool_low, s.runner_pool_high) == (1, 2)
    assert s.api_replicas == 0
    assert s.replicas_here() == max(1, min((os.cpu_count() or 1) // 2, 8))
    assert s.object_store_bytes == 200 * 2**20
    assert re.fullmatch(r"[0-9a-f]{16}", s.code_version)
    assert s.code_version == source_digest()
    assert re.fullmatch(r"[A-Za-z0-9._-]+", s.admin_user)


ENV_CASES = [
    ("OMNIGENT_HOST", "0.0.0.0", "host", "0.0.0.0"),
    ("OMNIGENT_PORT", "7001", "port", 7001),
    ("OMNIGENT_HOST_CALL_TIMEOUT_S", "2.5", "host_call_timeout_s", 2.5),
    ("OMNIGENT_LAUNCH_TIMEOUT_S", "90", "launch_timeout_s", 90.0),
    ("OMNIGENT_CODE_VERSION", "forced", "code_version", "forced"),
    ("OMNIGENT_SESSION_IDLE_S", "2", "session_idle_s", 2.0),
    ("OMNIGENT_TOKEN_CACHE_S", "0", "token_cache_s", 0.0),
    ("OMNIGENT_FILE_CAP_BYTES", "4096", "file_cap_bytes", 4096),
    ("OMNIGENT_OBJECT_STORE_BYTES", str(100 * 2**20), "object_store_bytes", 100 * 2**20),
    ("OMNIGENT_MAX_TERMINALS", "3", "max_terminals", 3),
    ("OMNIGENT_RECONCILE_S", "0.5", "reconcile_s", 0.5),
    ("OMNIGENT_RUNNER_POOL_LOW", "0", "runner_pool_low", 0),
    ("OMNIGENT_RUNNER_POOL_HIGH", "8", "runner_pool_high", 8),
    ("OMNIGENT_API_REPLICAS", "3", "api_replicas", 3),
]


def test_every_field_but_the_state_dir_and_admin_has_a_case():
    fields = set(Settings.model_fields) - NOT_FROM_ENV
    assert {case[2] for case in ENV_CASES} == fields


@pytest.mark.parametrize(("env", "raw", "field", "value"), ENV_CASES)
def test_each_variable_sets_its_field(monkeypatch, env, raw, field, value):
    monkeypatch.setenv(env, raw)
    assert env_name(field) == env
    assert getattr(Settings.from_env(), field) == value


def test_flags_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("OMNIGENT_PORT", "7001")
    monkeypatch.setenv("OMNIGENT_HOST", "0.0.0.0")
    s = Settings.from_env(port=7002, host="127.0.0.5")
    assert (s.host, s.port) == ("127.0.0.5", 7002)


def test_state_dir_and_admin_are_not_taken_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNIGENT_STATE_DIR", "/elsewhere")
    monkeypatch.setenv("OMNIGENT_ADMIN_USER", "mallory")
    s = Settings.from_env()
    assert s.state_dir == str(tmp_path / ".omnigent")
    assert s.admin_user != "mallory"


def test_variables_of_the_host_side_are_not_settings(monkeypatch):
    """OMNIGENT_JOIN, _HOST_NAME, _TOKEN… belong to a host node or a client: ignored."""
    for name in (
        "OMNIGENT_JOIN",
        "OMNIGENT_HOST_NAME",
        "OMNIGENT_TOKEN",
        "OMNIGENT_RAY_NODE",
        "OMNIGENT_FAULT_RUNNER_START",
        "OMNIGENT_FAULT_FOLLOW_LAG_S",
    ):
        monkeypatch.setenv(name, "x")
    assert Settings.from_env().port == DEFAULT_PORT


BAD = [
    ("OMNIGENT_API_REPLICAS", "-1"),
    ("OMNIGENT_API_REPLICAS", "65"),
    ("OMNIGENT_PORT", "abc"),
    ("OMNIGENT_PORT", "0"),
    ("OMNIGENT_PORT", "65536"),
    ("OMNIGENT_PORT", "-1"),
    ("OMNIGENT_PORT", "1.5"),
    ("OMNIGENT_HOST", ""),
    ("OMNIGENT_HOST_CALL_TIMEOUT_S", "0"),
    ("OMNIGENT_HOST_CALL_TIMEOUT_S", "-5"),
    ("OMNIGENT_LAUNCH_TIMEOUT_S", "nan"),
    ("OMNIGENT_LAUNCH_TIMEOUT_S", "inf"),
    ("OMNIGENT_SESSION_IDLE_S", "-1"),
    ("OMNIGENT_SESSION_IDLE_S", "soon"),
    ("OMNIGENT_TOKEN_CACHE_S", "-1"),
    ("OMNIGENT_FILE_CAP_BYTES", "0"),
    ("OMNIGENT_FILE_CAP_BYTES", "1e9"),
    ("OMNIGENT_OBJECT_STORE_BYTES", "1000"),
    ("OMNIGENT_MAX_TERMINALS", "0"),
    ("OMNIGENT_RECONCILE_S", "0"),
    ("OMNIGENT_RUNNER_POOL_LOW", "-1"),
    ("OMNIGENT_RUNNER_POOL_HIGH", "65"),
]


@pytest.mark.parametrize(("env", "raw"), BAD)
def test_invalid_values_are_refused_in_one_line_naming_the_variable(monkeypatch, env, raw):
    monkeypatch.setenv(env, raw)
    with pytest.raises(ValidationError) as info:
        Settings.from_env()
    message = describe_error(info.value)
    assert "\n" not in message
    assert message.startswith(f"invalid setting {env} (")
    assert repr(raw) in message


def test_several_errors_stay_on_one_line(monkeypatch):
    monkeypatch.setenv("OMNIGENT_PORT", "abc")
    monkeypatch.setenv("OMNIGENT_SESSION_IDLE_S", "-1")
    with pytest.raises(ValidationError) as info:
        Settings.from_env()
    message = describe_error(info.value)
    assert "\n" not in message and "OMNIGENT_PORT" in message and "SESSION_IDLE_S" in message


def test_a_bad_flag_is_refused_too():
    with pytest.raises(ValidationError):
        Settings.from_env(port=0)


def test_unknown_fields_are_refused(tmp_path):
    with pytest.raises(ValidationError):
        Settings(state_dir=str(tmp_path), prot=1)


def test_frozen(tmp_path):
    s = Settings(state_dir=str(tmp_path))
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]


# across Ray ----------------------------------------------------------------------------

HOSTILE = {
    "OMNIGENT_PORT": "abc",
    "OMNIGENT_SESSION_IDLE_S": "-1",
    "OMNIGENT_FILE_CAP_BYTES": "5",
    "OMNIGENT_CODE_VERSION": "other",
    "OMNIGENT_MAX_TERMINALS": "99",
    "OMNIGENT_HOST": "10.9.9.9",
}


def _built(monkeypatch) -> Settings:
    monkeypatch.setenv("OMNIGENT_PORT", "7005")
    monkeypatch.setenv("OMNIGENT_SESSION_IDLE_S", "2")
    monkeypatch.setenv("OMNIGENT_FILE_CAP_BYTES", "1024")
    s = Settings.from_env()
    for name in ("OMNIGENT_PORT", "OMNIGENT_SESSION_IDLE_S", "OMNIGENT_FILE_CAP_BYTES"):
        monkeypatch.delenv(name)
    return s


def test_the_dict_is_taken_as_it_is_whatever_the_other_side_environment(monkeypatch):
    """An actor on another node: `Settings(**d)` and `model_validate(d)` give the CLI's
    values, even where that node's environment has other (or invalid) values."""
    sent = _built(monkeypatch)
    wire = pickle.loads(pickle.dumps(sent.to_dict()))
    json.dumps(wire)  # plain data
    for name, value in HOSTILE.items():
        monkeypatch.setenv(name, value)
    for got in (Settings(**wire), Settings.model_validate(wire)):
        assert got == sent
        assert got.to_dict() == sent.to_dict()
        assert (got.port, got.session_idle_s, got.file_cap_bytes) == (7005, 2.0, 1024)


def test_only_from_env_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNIGENT_PORT", "7001")
    assert Settings(state_dir=str(tmp_path)).port == DEFAULT_PORT
    assert Settings.model_validate({"state_dir": str(tmp_path)}).port == DEFAULT_PORT
    assert Settings.from_env().port == 7001


def test_the_dict_is_validated_on_the_other_side_too(tmp_path):
    wire = Settings(state_dir=str(tmp_path)).to_dict()
    with pytest.raises(ValidationError):
        Settings(**{**wire, "port": 0})
    with pytest.raises(ValidationError):
        Settings(**{**wire, "session_idle_s": math.nan})


def test_derived_paths_and_namespace(tmp_path):
    s = Settings(state_dir=str(tmp_path))
    assert s.db_path == str(tmp_path / "omnigent.db")
    assert s.files_dir == str(tmp_path / "files")
    link = tmp_path.parent / f"{tmp_path.name}-link"
    link.symlink_to(tmp_path)
    assert Settings(state_dir=str(link)).namespace == s.namespace
    assert Settings(state_dir=str(tmp_path / "other")).namespace != s.namespace


def test_runner_settings_are_keyword_arguments_of_assign(tmp_path):
    params = inspect.signature(RunnerActor.assign).parameters
    s = Settings(state_dir=str(tmp_path), max_terminals=3, reconcile_s=2)
    assert s.runner_settings() == {"max_terminals": 3, "reconcile_s": 2.0}
    assert set(s.runner_settings()) <= set(params)


# the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["serve"], ["stop"], ["token", "create", "bob"]])
def test_the_cli_says_what_is_wrong_in_one_line(monkeypatch, capsys, argv):
    monkeypatch.setenv("OMNIGENT_PORT", "abc")
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("omnigent: invalid setting OMNIGENT_PORT (port)='abc'")


def test_the_cli_refuses_a_port_flag_out_of_range(capsys):
    assert cli.main(["serve", "--port", "70000"]) == 2
    assert "OMNIGENT_PORT (port)=70000" in capsys.readouterr().err


def test_commands_that_need_no_settings_ignore_them(monkeypatch, capsys):
    monkeypatch.setenv("OMNIGENT_PORT", "abc")
    assert cli.main(["join-line", "bob"]) == 1  # no server ran here: its own message
    assert "invalid setting" not in capsys.readouterr().err


def test_readme_documents_every_setting():
    rows = re.findall(r"^\| `(OMNIGENT_[A-Z_]+)` \|", README.read_text(), re.M)
    assert sorted(rows) == sorted(env_name(f) for f in set(Settings.model_fields) - NOT_FROM_ENV)
