"""`omnigent serve`: Ray (embedded or attached), the ControlActor, the Serve app, and
this machine enrolled as a host of the local user. Runs in the foreground.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from omnigent.config import Settings, state_dir
from omnigent.daemon import HostDaemon
from omnigent.ids import new_token
from omnigent.store import Store

# Fast failure detection (RAY_NOTES.md): a dead host is seen in ~2.4 s, not ~13 s.
HEALTH_CHECKS = {
    "health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 1000,
}


def local_user() -> str:
    """The local user's name, as a token user name (letters, digits, '-', '_', '.')."""
    name = getpass.getuser()
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "local"


def ensure_local_token(settings: Settings, user: str) -> str:
    """The local user's token from `~/.omnigent/token`, made (mode 0600) if missing."""
    path = Path(settings.state_dir) / "token"
    store = Store(settings.db_path)
    try:
        if path.exists():
            token = path.read_text().strip()
            if store.user_for_token(token) == user:
                return token
        token = new_token()
        store.add_token(user, token)
    finally:
        store.close()
    write_private(path, token + "\n")
    return token


def write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _init_ray(address: str | None, node_ip: str | None, namespace: str) -> None:
    import ray

    kwargs: dict = dict(namespace=namespace, include_dashboard=False, log_to_driver=False,
                        configure_logging=True, logging_level="WARNING")
    if address is None:
        kwargs.update(address="local", _system_config=HEALTH_CHECKS,
                      object_store_memory=int(os.environ.get("OMNIGENT_OBJECT_STORE_BYTES",
                                                             200 * 2**20)))
        if node_ip:
            kwargs["_node_ip_address"] = node_ip
    else:
        kwargs["address"] = address
        if node_ip:
            kwargs["_node_ip_address"] = node_ip
    ray.init(**kwargs)


def start(settings: Settings, address: str | None, node_ip: str | None) -> dict:
    """Bring the server up; returns what the CLI prints."""
    import ray
    from ray import serve

    from actors import options
    from actors.remote import RemoteControl

    _init_ray(address, node_ip, settings.namespace)
    ctx = ray.get_runtime_context()
    node_id = ctx.get_node_id()
    node_ip = ray.util.get_node_ip_address()
    old = _get_actor("control", settings.namespace)
    if old is not None:  # left over from a crashed server on an attached cluster
        ray.kill(old)
        time.sleep(0.5)
    control = RemoteControl.options(**options.control_options(settings.namespace, node_id)).remote(
        settings.to_dict())
    ray.get(control.start.remote())

    from serve_app import OmnigentIngress

    serve.start(proxy_location="Disabled")
    serve.run(
        OmnigentIngress.options(ray_actor_options={
            "num_cpus": 0, "resources": {f"node:{node_ip}": 0.001}}).bind(settings.to_dict()),
        name=settings.namespace, route_prefix=f"/{settings.namespace}", blocking=False,
    )
    _wait_http(settings.url + "/healthz", timeout=120)
    return {"ray_address": ctx.gcs_address, "node_ip": node_ip, "control": control}


def _get_actor(name: str, namespace: str):
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the API did not come up at {url}")


def join_command(ray_address: str) -> str:
    token_env = ""
    token = _ray_auth_token()
    if token:
        token_env = f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN={token} "
    return f"{token_env}ray start --address={ray_address}"


def _ray_auth_token() -> str | None:
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"]
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    return path.read_text().strip() if path.exists() else None


def serve_forever(port: int, address: str | None, bind_host: str, node_ip: str | None) -> int:
    t0 = time.monotonic()
    settings = Settings(state_dir=str(state_dir()), host=bind_host, port=port,
                        session_idle_s=float(os.environ.get("OMNIGENT_SESSION_IDLE_S", 300)),
                        file_cap_bytes=int(os.environ.get("OMNIGENT_FILE_CAP_BYTES", 1024 ** 3)))
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    user = local_user()
    token = ensure_local_token(settings, user)
    up = start(settings, address, node_ip)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own
        signal.signal(sig, lambda *_: stopping.set())

    daemon = HostDaemon(settings.url, token, up["node_ip"], join=False)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(daemon.run(),), daemon=True)
    thread.start()
    if not daemon.registered.wait(60):
        raise RuntimeError("the local machine could not register as a host")
    info = {"url": settings.url, "ray_address": up["ray_address"], "namespace": settings.namespace,
            "pid": os.getpid(), "user": user, "host_id": daemon.host["id"]}
    write_private(Path(settings.state_dir) / "server.json", json.dumps(info, indent=2) + "\n")
    print(f"omnigent server ready in {time.monotonic() - t0:.1f}s", flush=True)
    print(f"  URL:    {settings.url}", flush=True)
    print(f"  user:   {user} (host {daemon.host['id']} online)", flush=True)
    print("  join another machine to the cluster, then register it as a host:", flush=True)
    print(f"    {join_command(up['ray_address'])}", flush=True)
    print(f"    omnigent host {settings.url} --token <TOKEN>", flush=True)
    print(f"  token (saved in {settings.state_dir}/token):", flush=True)
    print(token, flush=True)

    while not stopping.wait(0.5):
        pass
    print("stopping…", flush=True)
    loop.call_soon_threadsafe(daemon.stop)
    thread.join(5)
    shutdown(settings, up["control"], embedded=address is None)
    return 0


def shutdown(settings: Settings, control, embedded: bool) -> None:
    import ray
    from ray import serve

    try:
        ray.get(control.shutdown.remote(), timeout=15)
    except Exception:  # noqa: BLE001 - shutting down regardless
        pass
    if not embedded:
        try:
            serve.delete(settings.namespace)
        except Exception:  # noqa: BLE001
            pass
        ray.kill(control)
    ray.shutdown()
