"""Server settings: built once by the CLI, passed explicitly to the actors and the app."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_PORT = 6767


def state_dir(home: str | None = None) -> Path:
    """`$HOME/.omnigent`, where all durable state of a server or a host daemon lives."""
    return Path(home or os.path.expanduser("~")) / ".omnigent"


@dataclass(frozen=True)
class Settings:
    state_dir: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # How long a call to a host may take before the client gets 504.
    host_call_timeout_s: float = 5.0
    # How long a runner launch may take (worktree + actor start) before 504.
    launch_timeout_s: float = 60.0
    # The user whose host the server's own machine is (the one who runs `omnigent serve`).
    admin_user: str = "local"
    # A digest of the server's code: a running server of another version is rolled forward.
    code_version: str = ""
    # A SessionActor with nothing to do exits after this long; its state is in the store.
    session_idle_s: float = 300.0
    # How long the API trusts a token it has already checked.
    token_cache_s: float = 30.0
    # The largest file a session may upload (bytes); more gives 413.
    file_cap_bytes: int = 1024 ** 3

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

    def to_dict(self) -> dict:
        return asdict(self)


def code_version() -> str:
    """A digest of every Python source of the server (omnigent/, actors/, serve_app.py);
    `OMNIGENT_CODE_VERSION` overrides it (to force a roll forward)."""
    import omnigent

    if os.environ.get("OMNIGENT_CODE_VERSION"):
        return os.environ["OMNIGENT_CODE_VERSION"]
    root = Path(omnigent.__file__).resolve().parent.parent
    files = sorted([*root.glob("omnigent/**/*.py"), *root.glob("actors/*.py"),
                    root / "serve_app.py"])
    digest = hashlib.sha256()
    for f in files:
        if f.exists():
            digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]
