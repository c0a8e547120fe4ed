"""Two loopback "machines" (127.0.0.2, 127.0.0.3) reachable over SSH, for real `ray up` tests.

A private sshd (Debian: openssh-server, rsync) listens on both addresses and gives each its
own fresh HOME, so Ray's local provider can SSH "between machines" on one box:

    @pytest.fixture(scope="session")
    def machines():
        with LoopbackMachines(cluster_name="e2e") as m:
            yield m      # m.auth() -> yaml `auth:`; run `ray up` with RAY_UP_enable_autoscaler_v2=0

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
from typing import Self

ADDRS = ("127.0.0.2", "127.0.0.3")
SSHD = "/usr/sbin/sshd"
PREFIX = os.path.join(tempfile.gettempdir(), "omni-machines-")
# `ray up` gives the head `auth.ssh_private_key: ~/ray_bootstrap_key.pem`, and ssh expands
# `~` in `-i` from the passwd entry, not $HOME: the head's autoscaler looks here.
BOOTSTRAP_KEY = Path(pwd.getpwuid(os.getuid()).pw_dir) / "ray_bootstrap_key.pem"
# sshd gives login shells a clean environment: carry over what pip needs on this box.
COPIED_ENV = (
    "XDG_CONFIG_DIRS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)

# `ray down` (and cluster yamls) run a bare `ray stop`, which stops every Ray process on the
# box, other machines' and clusters' too. A PATH shim would be shadowed by (or bypass) the
# project's own `ray` shim, so every Python there imports this, which scopes Ray's `stop`.
GUARD = """# Written by tests/e2e/machines.py.
import sys
if (sys.argv or [""])[0].endswith("/ray") and sys.argv[1:2] == ["stop"]:
    import runpy
    runpy.run_path({module!r})["scope_ray_stop"]()
"""

PROFILE = """# Written by tests/e2e/machines.py; ray runs commands with `bash --login -c -i`.
cd "$HOME"  # sshd starts in the passwd home
export PATH="{pybin}:$PATH"
export PYTHONPATH="$HOME/.e2e-guard${{PYTHONPATH:+:$PYTHONPATH}}"
# Ray's temp dir (session dirs, ray_current_cluster, the head's cluster state) per machine,
# not the box-wide /tmp/ray of other clusters. (Workers reuse the head's path, as Ray does.)
export RAY_TMPDIR="$HOME/tmp"
{env}
"""


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat fields after the command name: state, ppid, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ["?", "0"]


def _owner(pid: int, homes: set[str]) -> str | None:
    """Which of `homes` (machines) a live process belongs to: its environ's HOME, else the
    HOME holding its working directory, else the HOME holding most of its mapped files
    (e.g. the venv's _raylet.so). Ray's setproctitle zeroes all or the start of the
    environ block (psutil's environ() then sees nothing)."""
    if _stat(pid)[0] == "Z":  # zombies (PID 1 here reaps lazily) have no environ
        return None
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        home = next((e[5:].decode(errors="replace") for e in env if e.startswith(b"HOME=")), None)
        if home is not None:
            return home if home in homes else None
        # redis-server's process title overwrites its environ too; its working directory
        # is its data dir, in the machine's HOME
        cwd = os.readlink(f"/proc/{pid}/cwd")
        owner = next((h for h in homes if cwd == h or cwd.startswith(h + "/")), None)
        if owner is not None:
            return owner
        maps = Path(f"/proc/{pid}/maps").read_text(errors="replace")
    except OSError:
        return None
    best = max(homes, key=lambda h: maps.count(f" {h}/"), default=None)
    return best if best and f" {best}/" in maps else None


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def scope_ray_stop() -> None:
    """Let this `ray stop` see only this machine's processes. It stays Ray's own `ray stop`
    (raylet, the rest, gcs_server; each TERM then KILL: all at once deadlocks them)."""
    # Ray first: importing it puts its vendored psutil on sys.path.
    import ray.scripts.scripts  # noqa: F401, I001
    import psutil

    home, iter_all = os.environ["HOME"], psutil.process_iter
    psutil.process_iter = lambda *a, **kw: (p for p in iter_all(*a, **kw) if _owner(p.pid, {home}))


def sshd_available() -> bool:
    return all(shutil.which(t) for t in (SSHD, "ssh", "ssh-keygen", "rsync"))


class LoopbackMachines:
    def __init__(self, cluster_name: str = "omnigent", addrs=ADDRS, user: str = "root"):
        self.cluster_name, self.addrs, self.user = cluster_name, tuple(addrs), user
        self.root: Path | None = None
        self.sshd: subprocess.Popen | None = None

    def __enter__(self) -> Self:
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

    def start(self) -> Self:
        if not sshd_available():
            raise RuntimeError("needs sshd and rsync: apt-get install -y openssh-server rsync")
        atexit.register(self.stop)
        try:
            self.root = Path(tempfile.mkdtemp(prefix=os.path.basename(PREFIX)))
            ssh_dir = self.root / "ssh"
            ssh_dir.mkdir()
            for name in ("host_key", "id_ed25519"):
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / name)],
                    check=True,
                )
            shutil.copy(ssh_dir / "id_ed25519.pub", ssh_dir / "authorized_keys")
            for addr in self.addrs:
                self._make_home(self.home(addr))
            self._start_sshd(ssh_dir)
            self._place_bootstrap_key()
            for addr in self.addrs:  # also proves no other sshd answers on these addresses
                out = self.ssh(addr, 'echo "HOME=$HOME"', timeout=30).stdout
                if f"HOME={self.home(addr)}" not in out:
                    raise RuntimeError(f"{addr}: unexpected login: {out!r}")
        except BaseException:
            self.stop()
            raise
        return self

    def _make_home(self, home: Path) -> None:
        (home / ".e2e-guard").mkdir(parents=True)
        (home / ".e2e-guard" / "sitecustomize.py").write_text(
            GUARD.format(module=os.path.abspath(__file__))
        )
        (home / "tmp").mkdir()
        env = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in COPIED_ENV}
        # One cache for all runs and machines, so only the first install downloads.
        env.setdefault("PIP_CACHE_DIR", os.path.expanduser("~/.cache/pip"))
        (home / ".profile").write_text(
            PROFILE.format(
                pybin=os.path.dirname(sys._base_executable),  # has venv + pip; Debian's lacks venv
                env="\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())),
            )
        )
        (home / ".bashrc").write_text("# ray sources this after ~/.profile\n")
        # User-level pip config is looked up under HOME: copy the real user's.
        xdg = os.environ.get("XDG_CONFIG_HOME", os.path.expanduser("~/.config"))
        for src, rel in (
            (Path(xdg, "pip", "pip.conf"), ".config/pip/pip.conf"),
            (Path("~/.pip/pip.conf").expanduser(), ".pip/pip.conf"),
        ):
            if src.is_file():
                (home / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, home / rel)

    def _start_sshd(self, ssh_dir: Path) -> None:
        lines = [f"ListenAddress {a}:22" for a in self.addrs] + [
            f"HostKey {ssh_dir / 'host_key'}",
            f"PidFile {ssh_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {ssh_dir / 'authorized_keys'}",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "PrintMotd no",
            "PrintLastLog no",
            "MaxStartups 100",
            "MaxSessions 100",
        ]
        # SetEnv (OpenSSH >= 7.8, allowed in Match) overrides the passwd HOME sshd sets.
        for a in self.addrs:
            lines += [f"Match LocalAddress {a}", f"    SetEnv HOME={self.home(a)}"]
        (ssh_dir / "sshd_config").write_text("\n".join(lines) + "\n")
        os.makedirs("/run/sshd", exist_ok=True)  # privilege-separation dir
        log = ssh_dir / "sshd.log"
        self.sshd = subprocess.Popen(
            [SSHD, "-D", "-f", str(ssh_dir / "sshd_config"), "-E", str(log)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + 10
        while not log.exists() or log.read_text().count("Server listening") < len(self.addrs):
            if self.sshd.poll() is not None or time.time() > deadline:
                raise RuntimeError("sshd failed:\n" + (log.read_text() if log.exists() else ""))
            time.sleep(0.05)

    def _place_bootstrap_key(self) -> None:
        # We hold the ports now, so a link into PREFIX is a crashed run's, never a live one's.
        if BOOTSTRAP_KEY.is_symlink() and os.readlink(BOOTSTRAP_KEY).startswith(PREFIX):
            BOOTSTRAP_KEY.unlink()
        if os.path.lexists(BOOTSTRAP_KEY):
            raise RuntimeError(f"{BOOTSTRAP_KEY} exists (someone else's?); not clobbering it")
        BOOTSTRAP_KEY.symlink_to(self.key)

    def ssh_argv(self, addr: str) -> list[str]:
        return [
            "ssh",
            "-i",
            self.key,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            f"{self.user}@{addr}",
        ]

    def ssh(self, addr: str, command: str, timeout: float = 600, check: bool = False):
        """Run `command` in a login shell as ray does, minus the tty (stdout and stderr stay
        apart; bash -i then prints "no job control" on stderr). A timeout kills only the
        local ssh: the remote command runs on until kill_leftovers()."""
        wrapped = f"source ~/.bashrc; export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore && ({command})"
        return subprocess.run(
            self.ssh_argv(addr) + ["bash", "--login", "-c", "-i", shlex.quote(wrapped)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            stdin=subprocess.DEVNULL,
        )

    def processes(self) -> list[tuple[int, str]]:
        """(pid, cmdline) of every live process started on the machines (see _owner)."""
        homes = {str(self.home(a)) for a in self.addrs} if self.root else set()
        out = []
        for pid in _pids():
            try:
                if _owner(pid, homes):
                    out.append(
                        (
                            pid,
                            Path(f"/proc/{pid}/cmdline")
                            .read_bytes()
                            .replace(b"\0", b" ")
                            .decode(errors="replace")
                            .strip(),
                        )
                    )
            except OSError:  # gone meanwhile
                pass
        return out

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
            sessions = [p for p in _pids() if int(_stat(p)[1]) == self.sshd.pid]
            os.killpg(self.sshd.pid, signal.SIGTERM)
            try:
                self.sshd.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.sshd.pid, signal.SIGKILL)
                self.sshd.wait()
            _kill(sessions)
            self.sshd = None
        if self.root:
            if BOOTSTRAP_KEY.is_symlink() and os.readlink(BOOTSTRAP_KEY) == self.key:
                BOOTSTRAP_KEY.unlink()
            self._remove_launcher_state()
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _remove_launcher_state(self) -> None:
        """What `ray up` / `ray down` leave on the launching machine for this cluster."""
        # = ray.autoscaler._private.local.config.get_{state,lock}_path (importing ray is
        # slow, and fails at interpreter exit).
        tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        paths = [Path(tmp, "ray", f"cluster-{self.cluster_name}.{e}") for e in ("state", "lock")]
        # commands._bootstrap_config's resolved-config cache; it names our temp key.
        paths += [
            p
            for p in Path(tempfile.gettempdir()).glob("ray-config-*")
            if str(self.root) in p.read_text(errors="replace")
        ]
        for p in paths:
            p.unlink(missing_ok=True)
        # SSHCommandRunner's ControlMaster sockets: /tmp/ray_ssh_<user hash>/<cluster hash>.
        h = lambda s: hashlib.sha256(s.encode()).hexdigest()[:10]
        shutil.rmtree(
            f"/tmp/ray_ssh_{h(getpass.getuser())}/{h(self.cluster_name)}", ignore_errors=True
        )
