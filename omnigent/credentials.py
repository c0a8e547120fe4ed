"""Secrets on disk: the Ray cluster token, the server's secret, bearer tokens.

Every secret lives in a file readable by its owner only (mode 0600, in a 0700 directory),
written atomically, and is handed to Ray through `RAY_AUTH_TOKEN_PATH` — never on a
command line, where every user of the machine could read it in `ps`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

RAY_TOKEN_FILE = "ray_token"
SERVER_SECRET_FILE = "server_secret"


def write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_or_create(path: Path, make=lambda: secrets.token_hex(32)) -> str:
    """The secret in `path`, made (0600) if there is none yet."""
    try:
        text = path.read_text().strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    write_private(path, make() + "\n")
    return path.read_text().strip()


def ensure_ray_token(state_dir: Path) -> Path:
    """The cluster token's file under the state dir, made if missing."""
    path = state_dir / RAY_TOKEN_FILE
    read_or_create(path)
    return path


def server_secret(state_dir: Path) -> bytes:
    """The secret join keys are made with (see omnigent.domain.enrollment)."""
    return read_or_create(state_dir / SERVER_SECRET_FILE).encode()


def ray_auth_env(token_path: Path | str) -> dict[str, str]:
    """What a Ray process (node, driver) needs in its environment for token auth."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}


def ray_auth_given() -> tuple[str | None, str | None]:
    """The cluster token this process was given in its environment: (`RAY_AUTH_TOKEN`,
    `RAY_AUTH_TOKEN_PATH`), each None if unset. The process's (a node's, a driver's) own
    environment, not a server setting: the one function that reads it."""
    token = (os.environ.get("RAY_AUTH_TOKEN") or "").strip()
    return token or None, os.environ.get("RAY_AUTH_TOKEN_PATH") or None


def use_ray_token(state_dir: Path, remember: bool = False) -> None:
    """Make this process (a driver) and its children use token auth: the token given in
    the environment if any (kept in the state dir's token file when `remember`, so that
    `omnigent join-line` and `omnigent stop` find it), else that file (made if missing)."""
    os.environ["RAY_AUTH_MODE"] = "token"
    given = current_ray_token()
    path = state_dir / RAY_TOKEN_FILE
    if given is None:
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(ensure_ray_token(state_dir))
    elif remember and os.path.realpath(ray_auth_given()[1] or "") != os.path.realpath(path):
        write_private(path, given + "\n")


def current_ray_token() -> str | None:
    """The token this process uses (for printing a join line)."""
    token, path = ray_auth_given()
    if token:
        return token
    return Path(path).read_text().strip() if path and Path(path).exists() else None
