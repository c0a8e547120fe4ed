"""A Python >= 3.12 virtualenv holding `omnigent==<version>` (its `omnigent_client` needs
3.12; our suite runs on 3.11), made once and cached under
`$XDG_CACHE_HOME/omnigent-client-venv/<version>` (default `~/.cache/...`).

Which interpreter: `$OMNIGENT_CLIENT_PYTHON` if set, else pyenv's installed 3.12+ versions,
else `python3.1x`/`python3` on PATH; each candidate is run to check its version (a pyenv
shim for a version that is not selected fails, and is passed over). None found → skip.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT_VERSION = "0.19.0"
MIN_PYTHON = (3, 12)
_PROBE = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2], sys.executable)"


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(root, "omnigent-client-venv", CLIENT_VERSION)


def _candidates() -> list[str]:
    out: list[str] = []
    if os.environ.get("OMNIGENT_CLIENT_PYTHON"):
        out.append(os.environ["OMNIGENT_CLIENT_PYTHON"])
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.join(Path.home(), ".pyenv")
    versions = glob.glob(os.path.join(pyenv_root, "versions", "3.*", "bin", "python3"))

    def key(path: str) -> tuple:
        name = Path(path).parent.parent.name
        return tuple(int(p) if p.isdigit() else 0 for p in name.split(".")[:3])

    # the oldest suitable one first: 3.12 is what the client is released for
    out += sorted(versions, key=key)
    for name in ("python3.12", "python3.13", "python3.14", "python3"):
        path = shutil.which(name)
        if path:
            out.append(path)
    return out


def find_python() -> str | None:
    """A Python >= 3.12 with venv and ensurepip, or None."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    for cand in _candidates():
        try:
            out = subprocess.run(
                [cand, "-c", _PROBE], capture_output=True, text=True, timeout=30, env=env
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode != 0 or not out.stdout.strip():
            continue
        version, exe = out.stdout.split(maxsplit=1)
        if tuple(int(x) for x in version.split(".")) >= MIN_PYTHON:
            return exe.strip()
    return None


def client_python() -> str:
    """The venv's python, the venv made (under a lock) if it is not there yet; skips the
    calling test when no Python >= 3.12 exists here."""
    venv = cache_dir()
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(str(venv) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists() and python.exists():
            return str(python)
        base = find_python()
        if base is None:
            pytest.skip(
                f"omnigent_client {CLIENT_VERSION} needs Python >= 3.12 and none was "
                "found (pyenv versions, python3.12+ on PATH, $OMNIGENT_CLIENT_PYTHON)"
            )
        shutil.rmtree(venv, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        steps = [
            [base, "-m", "venv", str(venv)],
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                f"omnigent=={CLIENT_VERSION}",
            ],
            [str(python), "-I", "-c", "import omnigent_client"],
        ]
        for argv in steps:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
            if out.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise RuntimeError(
                    f"{' '.join(argv)} failed ({out.returncode}):\n"
                    f"{out.stdout[-3000:]}{out.stderr[-3000:]}"
                )
        ready.write_text(f"{CLIENT_VERSION} {base} {sys.platform}\n")
        return str(python)
