"""One real server for the module (`omnigent serve`: its own machine is the user's online
host, with a runner pool), a workspace under its HOME, and headless Chromium (Debian's
`chromium`, driven by Playwright; Playwright's own browsers are never downloaded).
Screenshots of the main views go to artifacts/screenshots/ (git-ignored)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.procs import Server

CHROMIUM = os.environ.get("OMNIGENT_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
# a 1x1 PNG
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db20000000049454e44ae426082"
)


@dataclass
class Ui:
    server: Server
    workspace: Path
    browser: object  # playwright Browser
    signed_in_url: str  # as `omnigent serve` prints it

    def shot(self, page, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _chromium_missing() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def ui():
    reason = _chromium_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    server = Server(env={"OMNIGENT_RUNNER_POOL_HIGH": "1", "OMNIGENT_API_REPLICAS": "1"})
    ws = Path(server.home, "projects", "demo")
    (ws / "src").mkdir(parents=True)
    (ws / "hello.txt").write_text("hello\nworld\n")
    (ws / "src" / "main.py").write_text("print('hi')\n")
    (ws / ".secret-config").write_text("hidden\n")
    (ws / "pixel.png").write_bytes(PNG)
    (ws / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (ws / "lots").mkdir()
    for i in range(250):  # more than a page: of the picker (100) and of the tree (200)
        (ws / "lots" / f"f{i:03d}").write_text("")
    git = ["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "start"], check=True)
    server.start()
    printed = server.proc.wait_for(r"^  web UI: (\S+)$", 5).group(1)
    assert printed.endswith(f"/#token={server.token}"), printed
    # the token alone stays the last line of what `omnigent serve` prints
    lines = server.proc.lines
    assert lines.index(f"  web UI: {printed}") < lines.index(server.token)
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
    try:
        yield Ui(server, ws, browser, printed)
    finally:
        browser.close()
        pw.stop()
        server.stop()
        shutil.rmtree(ws, ignore_errors=True)
