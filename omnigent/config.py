"""Server settings: read from the environment once (`Settings.from_env`, by the CLI),
then passed explicitly to the actors and the app (`to_dict()` across Ray, `Settings(**d)`
on the other side).

Only `from_env` reads the environment. `Settings(...)` and `Settings.model_validate(...)`
see their arguments and the defaults, nothing else: a ControlActor or an API replica on
another node, whose environment is that node's, gets exactly the values the CLI built.

What a *host node* reads about itself (its join key and name, omnigent.machine; Ray's
auth variables, omnigent.credentials; SSH_CONNECTION, omnigent.raynode; the test fault
switch, actors.host) is that node's environment, not the server's settings: those are
read where they apply, each in one function.
"""

from __future__ import annotations

import getpass
import hashlib
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_PORT = 6767
ENV_PREFIX = "OMNIGENT_"
# Ray refuses an object store smaller than 75 MiB.
MIN_OBJECT_STORE_BYTES = 75 * 2**20

_reading_env: ContextVar[bool] = ContextVar("omnigent_settings_from_env", default=False)

Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def state_dir(home: str | None = None) -> Path:
    """`$HOME/.omnigent`, where all durable state of a server or a host daemon lives."""
    return Path(home or os.path.expanduser("~")) / ".omnigent"


def local_user() -> str:
    """The local user's name, as a token user name (letters, digits, '-', '_', '.')."""
    name = getpass.getuser()
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "local"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", validate_default=True
    )

    # Not from the environment (see NOT_FROM_ENV): the state dir is `$HOME/.omnigent` for
    # every command, and the admin is the user who runs `omnigent serve`.
    state_dir: str = Field(min_length=1)
    admin_user: str = Field("local", pattern=r"^[A-Za-z0-9._-]+$")
    # The address and port the API listens on (`--host`, `--port` override them).
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    # How long a call to a host may take before the client gets 504.
    host_call_timeout_s: Seconds = 5.0
    # How long a runner launch may take (worktree + actor start) before 504.
    launch_timeout_s: Seconds = 60.0
    # A digest of the server's code: a running server of another version is rolled
    # forward. Empty: `from_env` computes it (`source_digest`).
    code_version: str = ""
    # A SessionActor with nothing to do exits after this long; its state is in the store.
    session_idle_s: Seconds = 30.0
    # Runners kept started on each host ahead of launches (a launch then takes ~ms, not
    # the ~1 s of starting a Ray worker): at least `low`, one more per launch of the last
    # minute up to `high`. 0 and 0: none (each launch starts its runner).
    runner_pool_low: int = Field(1, ge=0, le=64)
    runner_pool_high: int = Field(2, ge=0, le=64)
    # API replicas (Serve replicas on the head, sharing the port). 0: one per two CPUs of
    # the head, at least 1 and at most 8 (the head's other processes need the rest:
    # bench/bench_load.py measured 2 replicas on 2 cores at ~0.8x the throughput of 1).
    api_replicas: int = Field(0, ge=0, le=64)
    # How long the API trusts a token it has already checked (0: checked every time).
    token_cache_s: float = Field(30.0, ge=0, allow_inf_nan=False)
    # The largest file a session may upload (bytes); more gives 413.
    file_cap_bytes: int = Field(1024**3, ge=1)
    # The object store of the embedded Ray cluster (`omnigent serve` without --address).
    object_store_bytes: int = Field(200 * 2**20, ge=MIN_OBJECT_STORE_BYTES)
    # Live terminals per runner; one more gives 409 too_many_terminals.
    max_terminals: int = Field(16, ge=1)
    # How often a runner's change tracker re-checks its tree against the baseline (a net
    # under the inotify watcher).
    reconcile_s: Seconds = 30.0

    @classmethod
    def from_env(cls, **given: Any) -> Settings:
        """The server's settings: `given` (command-line flags), else `OMNIGENT_<FIELD>`
        from this process's environment, else the defaults. Raises ValidationError (see
        `describe_error`) for a value out of bounds."""
        given.setdefault("state_dir", str(state_dir()))
        given.setdefault("admin_user", local_user())
        token = _reading_env.set(True)
        try:
            settings = cls(**given)
        finally:
            _reading_env.reset(token)
        if not settings.code_version:
            settings = settings.model_copy(update={"code_version": source_digest()})
        return settings

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _reading_env.get():
            return init_settings, _ServerEnvironment(settings_cls)
        return (init_settings,)

    @property
    def db_path(self) -> str:
        return str(Path(self.state_dir) / "omnigent.db")

    @property
    def files_dir(self) -> str:
        """Uploaded files: `<files_dir>/<session id>/<file id>`, staged in `.incoming`."""
        return str(Path(self.state_dir) / "files")

    @property
    def namespace(self) -> str:
        """Ray namespace of this server: several servers may share one cluster."""
        digest = hashlib.sha256(os.path.realpath(self.state_dir).encode()).hexdigest()[:10]
        return f"omnigent-{digest}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def replicas_here(self) -> int:
        """The number of API replicas, on the machine this runs on (the head)."""
        return self.api_replicas or max(1, min((os.cpu_count() or 1) // 2, 8))

    def to_dict(self) -> dict:
        """Every field, for `Settings(**d)` on the other side of a Ray call."""
        return self.model_dump()

    def runner_settings(self) -> dict:
        """What a RunnerActor on a host needs of them (keyword arguments of RunnerActor.assign)."""
        return {"max_terminals": self.max_terminals, "reconcile_s": self.reconcile_s}


NOT_FROM_ENV = frozenset({"state_dir", "admin_user"})


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


class _ServerEnvironment(EnvSettingsSource):
    """`OMNIGENT_<FIELD>` for every field but those in NOT_FROM_ENV."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in NOT_FROM_ENV:
            return None, field_name, False
        return super().get_field_value(field, field_name)


def describe_error(exc: ValidationError) -> str:
    """One line for the user: which setting (its variable), the value, what is wrong."""
    parts = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "?"
        name = field if field in NOT_FROM_ENV else f"{env_name(field)} ({field})"
        shown = "" if err["type"] == "missing" else f"={err.get('input')!r}"
        parts.append(f"{name}{shown}: {err['msg']}")
    return "invalid setting " + "; ".join(parts)


def source_digest() -> str:
    """A digest of every Python source of the server (omnigent/, actors/, serve_app.py)."""
    import omnigent

    root = Path(omnigent.__file__).resolve().parent.parent
    files = sorted(
        [*root.glob("omnigent/**/*.py"), *root.glob("actors/*.py"), root / "serve_app.py"]
    )
    digest = hashlib.sha256()
    for f in files:
        if f.exists():
            digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]
