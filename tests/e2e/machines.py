"""Two loopback "machines" (127.0.0.2, 127.0.0.3) reachable over SSH, for real `ray up` tests.

A private sshd (needs Debian's openssh-server and rsync) listens on both addresses and gives
each its own fresh HOME, so Ray's local provider can SSH "between machines" on one box:

    with LoopbackMachines(cluster_name="smoke") as m:
        auth = m.auth()          # {"ssh_user": "root", "ssh_private_key": <abs path>}
        m.ssh("127.0.0.2", "ray status")

Port 22 is required: Ray's SSHCommandRunner never passes `-p`, and `ray up` drops
`auth.ssh_proxy_command` from the config it hands the head, so the head's autoscaler could
not use a proxy either. A system sshd bound to 0.0.0.0:22 would therefore clash.
"""

from __future__ import annotations

import atexit
import getpass
import hashlib
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ADDRS = ("127.0.0.2", "127.0.0.3")
SSHD = "/usr/sbin/sshd"
PREFIX = "omni-machines-"
# `ray up` rewrites the head's key to this; ssh expands `~` from the passwd entry, not $HOME.
BOOTSTRAP_KEY = Path(pwd.getpwuid(os.getuid()).pw_dir) / "ray_bootstrap_key.pem"
# sshd hands login shells a clean environment: carry over what pip needs on this box.
COPIED_ENV = ("XDG_CONFIG_DIRS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
              "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "no_proxy")

# `ray down` runs a bare `ray stop`, which stops every Ray process on the box (other
# clusters included). This shim runs the next `ray` on PATH (the venv's real one), except
# that `ray stop` only sees this machine's processes (see _ray_stop_here).
RAY_SHIM = """#!/bin/sh
IFS=:
for d in $PATH; do
    [ "$d" != "$HOME/bin" ] && [ -x "$d/ray" ] || continue
    [ "$1" = stop ] && shift && exec "$d/python" {module} ray-stop "$@"
    exec "$d/ray" "$@"
done
echo "ray: command not found" >&2; exit 127
"""

PROFILE = """# Written by tests/e2e/machines.py. A login bash reads this (ray runs `bash --login -c -i`).
cd "$HOME"
export PATH="$HOME/bin:{pybin}:$PATH"
# Keep Ray's temp dir (session dirs, ray_current_cluster, the head's cluster state) per
# machine instead of the box-wide /tmp/ray other clusters use.
export RAY_TMPDIR="$HOME/tmp"
{env}
# A function beats PATH, so the shim stays in front even after ~/.bashrc prepends a venv.
ray() {{ "$HOME/bin/ray" "$@"; }}
export -f ray
"""


def _proc_home(pid: int) -> str | None:
    """HOME from a live process's environ (None for zombies, kernel threads, gone pids)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(b"HOME="):
                return item[5:].decode(errors="replace")
    except (OSError, IndexError):
        pass
    return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        children.setdefault(_ppid(pid), []).append(pid)
    out, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _kill(pids, sig=signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def procs_with_home(homes) -> list[tuple[int, str]]:
    homes = {str(h) for h in homes}
    return [(pid, _cmdline(pid)) for pid in _pids() if _proc_home(pid) in homes]


def _ray_stop_here(args: list[str]) -> None:
    """Ray's own `ray stop` (order: raylet, the rest, gcs_server; TERM, KILL after a grace
    period: killing all at once deadlocks them), blind to other HOMEs. Runs in the venv."""
    import psutil
    from ray.scripts.scripts import main

    home, iter_all = os.environ["HOME"], psutil.process_iter

    def process_iter(*a, **kw):
        for p in iter_all(*a, **kw):
            try:
                if p.environ().get("HOME") == home:
                    yield p
            except psutil.Error:
                pass

    psutil.process_iter = process_iter
    sys.argv = ["ray", "stop", *args]
    main()


class LoopbackMachines:
    def __init__(self, cluster_name: str = "omnigent", addrs=ADDRS, user: str = "root"):
        self.cluster_name, self.addrs, self.user = cluster_name, tuple(addrs), user
        self.root: Path | None = None
        self.sshd: subprocess.Popen | None = None
        self._placed_bootstrap_key = False

    def __enter__(self) -> "LoopbackMachines":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def key(self) -> str:
        return str(self.root / "ssh" / "id_ed25519")

    def auth(self) -> dict:
        return {"ssh_user": self.user, "ssh_private_key": self.key}

    def home(self, addr: str) -> Path:
        return self.root / f"home-{addr.rsplit('.', 1)[1]}"

    def start(self) -> "LoopbackMachines":
        for tool in (SSHD, "ssh", "ssh-keygen", "rsync"):
            if not shutil.which(tool):
                raise RuntimeError(f"{tool} missing: apt-get install -y openssh-server rsync")
        atexit.register(self.stop)
        try:
            self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
            ssh_dir = self.root / "ssh"
            ssh_dir.mkdir()
            for name in ("host_key", "id_ed25519"):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                                str(ssh_dir / name)], check=True)
            shutil.copy(ssh_dir / "id_ed25519.pub", ssh_dir / "authorized_keys")
            for addr in self.addrs:
                self._make_home(self.home(addr))
            self._place_bootstrap_key()
            self._start_sshd(ssh_dir)
            for addr in self.addrs:  # also proves no other sshd answers on these addresses
                out = self.ssh(addr, 'echo "HOME=$HOME"', timeout=30).stdout
                if f"HOME={self.home(addr)}" not in out:
                    raise RuntimeError(f"{addr}: unexpected login: {out!r}")
        except BaseException:
            self.stop()
            raise
        return self

    def _make_home(self, home: Path) -> None:
        (home / "bin").mkdir(parents=True)
        (home / "tmp").mkdir()
        shim = home / "bin" / "ray"
        shim.write_text(RAY_SHIM.format(module=shlex.quote(os.path.abspath(__file__))))
        shim.chmod(0o755)
        env = {k: v for k, v in os.environ.items()
               if (k.startswith("PIP_") or k in COPIED_ENV) and k != "PIP_CACHE_DIR"}
        # One cache for every run and machine, so only the first install downloads.
        env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR",
                                              os.path.expanduser("~/.cache/pip"))
        (home / ".profile").write_text(PROFILE.format(
            pybin=os.path.dirname(sys._base_executable),  # has venv + pip; Debian's lacks venv
            env="\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))))
        (home / ".bashrc").write_text("# ray sources this after ~/.profile\n")
        # User-level pip config lives under the real HOME; pip looks under the new one.
        xdg = os.environ.get("XDG_CONFIG_HOME", os.path.expanduser("~/.config"))
        for src, rel in ((Path(xdg, "pip", "pip.conf"), ".config/pip/pip.conf"),
                         (Path("~/.pip/pip.conf").expanduser(), ".pip/pip.conf")):
            if src.is_file():
                (home / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, home / rel)

    def _place_bootstrap_key(self) -> None:
        """Symlink the passwd home's ~/ray_bootstrap_key.pem (the head autoscaler's key)."""
        if BOOTSTRAP_KEY.is_symlink() and not BOOTSTRAP_KEY.exists() \
                and os.readlink(BOOTSTRAP_KEY).startswith(os.path.join(tempfile.gettempdir(), PREFIX)):
            BOOTSTRAP_KEY.unlink()  # left by a crashed run of this harness
        if os.path.lexists(BOOTSTRAP_KEY):
            raise RuntimeError(f"{BOOTSTRAP_KEY} exists (another cluster's?); not clobbering it")
        BOOTSTRAP_KEY.symlink_to(self.key)
        self._placed_bootstrap_key = True

    def _start_sshd(self, ssh_dir: Path) -> None:
        lines = [f"ListenAddress {a}:22" for a in self.addrs] + [
            f"HostKey {ssh_dir / 'host_key'}", f"PidFile {ssh_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {ssh_dir / 'authorized_keys'}",
            "UsePAM no", "StrictModes no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
            "PrintMotd no", "PrintLastLog no", "MaxStartups 100", "MaxSessions 100"]
        # SetEnv (OpenSSH >= 7.8) overrides the HOME sshd sets from passwd; cwd stays the
        # passwd home, hence `cd "$HOME"` in ~/.profile.
        for a in self.addrs:
            lines += [f"Match LocalAddress {a}", f"    SetEnv HOME={self.home(a)}"]
        (ssh_dir / "sshd_config").write_text("\n".join(lines) + "\n")
        os.makedirs("/run/sshd", exist_ok=True)  # privilege-separation dir
        self.sshd = subprocess.Popen(
            [SSHD, "-D", "-f", str(ssh_dir / "sshd_config"), "-E", str(ssh_dir / "sshd.log")],
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 10
        log = ssh_dir / "sshd.log"
        while not log.exists() or log.read_text().count("Server listening") < len(self.addrs):
            if self.sshd.poll() is not None or time.time() > deadline:
                raise RuntimeError("sshd failed:\n" + (log.read_text() if log.exists() else ""))
            time.sleep(0.05)

    def ssh_argv(self, addr: str) -> list[str]:
        return ["ssh", "-i", self.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", f"{self.user}@{addr}"]

    def ssh(self, addr: str, command: str, timeout: float = 600, check: bool = False):
        """Run `command` in a login shell the way ray does (minus the tty, so stderr stays
        apart; bash -i then warns "no job control" on stderr)."""
        wrapped = f"source ~/.bashrc; export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore && ({command})"
        return subprocess.run(self.ssh_argv(addr) + ["bash", "--login", "-c", "-i",
                                                     shlex.quote(wrapped)],
                              capture_output=True, text=True, timeout=timeout, check=check,
                              stdin=subprocess.DEVNULL)

    def processes(self) -> list[tuple[int, str]]:
        """Every live process started on the machines (their HOME is a machine's HOME)."""
        return procs_with_home(self.home(a) for a in self.addrs) if self.root else []

    def kill_leftovers(self) -> list[int]:
        killed: list[int] = []
        for _ in range(50):  # ray daemons may fork while we kill
            pids = [p for p, _ in self.processes()]
            if not pids:
                break
            _kill(pids)
            killed += pids
            time.sleep(0.1)
        return killed

    def stop(self) -> None:
        atexit.unregister(self.stop)
        self.kill_leftovers()
        if self.sshd is not None:
            # Per-connection sshd children setsid(), so the listener's group misses them.
            sessions = _descendants(self.sshd.pid)
            os.killpg(self.sshd.pid, signal.SIGTERM)
            try:
                self.sshd.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.sshd.pid, signal.SIGKILL)
                self.sshd.wait()
            _kill(sessions)
            self.sshd = None
        if self._placed_bootstrap_key and os.path.islink(BOOTSTRAP_KEY) \
                and os.readlink(BOOTSTRAP_KEY) == self.key:
            BOOTSTRAP_KEY.unlink()
        self._placed_bootstrap_key = False
        if self.root:
            self._remove_launcher_state()
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _remove_launcher_state(self) -> None:
        """What `ray up` leaves on the launching machine for this cluster."""
        # ray.autoscaler._private.local.config.get_{state,lock}_path (not imported: slow,
        # and this also runs at exit).
        tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        paths = [Path(tmp, "ray", f"cluster-{self.cluster_name}.{ext}") for ext in ("state", "lock")]
        # The resolved-config cache (commands._bootstrap_config) names our temp key.
        paths += [p for p in Path(tempfile.gettempdir()).glob("ray-config-*")
                  if str(self.root) in p.read_text(errors="replace")]
        for p in paths:
            p.unlink(missing_ok=True)
        # SSH ControlMaster sockets (SSHCommandRunner: /tmp/ray_ssh_<user>/<cluster>).
        h = lambda s: hashlib.sha256(s.encode()).hexdigest()[:10]  # noqa: E731
        shutil.rmtree(f"/tmp/ray_ssh_{h(getpass.getuser())}/"
                      f"{h(self.cluster_name)}", ignore_errors=True)


if __name__ == "__main__" and sys.argv[1:2] == ["ray-stop"]:
    _ray_stop_here(sys.argv[2:])
