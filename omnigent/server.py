"""`omnigent serve` and `omnigent stop`: the server on Ray.

Two ways to run:

- **Embedded** (no `--address`): a single-machine Ray cluster of its own, with token
  authentication, in the foreground; Ctrl-C / SIGTERM stops the server and its Ray.
- **On a cluster** (`--address`): the ControlActor and the Serve application are detached,
  so the server outlives the `omnigent serve` process (the Ray driver), which deploys it
  and exits. Run again, it adopts a server of the same code version and rolls one of
  another version forward (sessions, files and bindings are in the store; runners and
  their terminals keep running). `omnigent stop` stops it.

Either way the server's own machine is enrolled as a host of the user who runs it, and
other machines join with a join line (see omnigent.domain.enrollment).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from omnigent.config import Settings
from omnigent.credentials import (
    current_ray_token,
    server_secret,
    use_ray_token,
    write_private,
)
from omnigent.domain.enrollment import JOIN_ENV, join_key
from omnigent.ids import new_token
from omnigent.store import Store

# Fast failure detection (RAY_NOTES.md): a dead host is seen in ~2.4 s, not ~13 s.
HEALTH_CHECKS = {
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 1000,
}


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


def prepare_state(settings: Settings) -> str:
    """The state dir (0700), the server's secret and the admin's token; returns the token."""
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    server_secret(state)  # made before the ControlActor reads it
    return ensure_local_token(settings, settings.admin_user)


def _init_ray(address: str | None, node_ip: str | None, settings: Settings) -> None:
    import ray

    kwargs: dict = dict(
        namespace=settings.namespace,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=True,
        logging_level="WARNING",
    )
    if address is None:
        kwargs.update(
            address="local",
            _system_config=HEALTH_CHECKS,
            object_store_memory=settings.object_store_bytes,
        )
    else:
        kwargs["address"] = address
    if node_ip:
        kwargs["_node_ip_address"] = node_ip
    if address is None:
        with _slim_head():
            ray.init(**kwargs)
    else:
        ray.init(**kwargs)


@contextlib.contextmanager
def _slim_head():
    """`ray.init` starting a head without three Python processes this server never uses:
    the dashboard's API server (with the dashboard off it loads only the usage-stats
    module, and `ray.init` disables usage stats; yet it waits ~2 s for it to come up), the
    autoscaler monitor (a fixed cluster of the machines that join) and the log monitor
    (it forwards workers' output to drivers, and this driver takes none:
    `log_to_driver=False`). ~155 MiB PSS and ~3 CPU seconds of a cold start (measured: see
    README "Performance"). Ray's own start-up otherwise: GCS, raylet and its two agents.

    `ray.init` builds its head through `ray._private.node.Node` (Ray is pinned to 2.60 in
    pyproject.toml); the swap lasts only for this call."""
    from ray._private import node as ray_node

    class SlimHead(ray_node.Node):
        def start_head_processes(self) -> None:
            self.start_gcs_server()
            assert self.get_gcs_client() is not None
            self._write_cluster_info_to_kv()
            self._webui_url = None
            self._ray_params.include_log_monitor = False

    saved = ray_node.Node
    ray_node.Node = SlimHead
    try:
        yield
    finally:
        ray_node.Node = saved


def _get_actor(name: str, namespace: str):
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def _kill_named(namespace: str) -> None:
    """Kill this server's named actors (HostActors, SessionActors…), never runners."""
    import ray
    from ray.util import list_named_actors

    for entry in list_named_actors(all_namespaces=True):
        name = entry["name"]
        if entry["namespace"] == namespace and name.startswith(("node_", "session_")):
            handle = _get_actor(name, namespace)
            if handle is not None:
                ray.kill(handle)


def deploy(settings: Settings, fresh_cluster: bool = False) -> str:
    """Bring the server up on the connected cluster, adopting or rolling forward one that
    runs already (`fresh_cluster`: the embedded cluster this process just started, where
    none can run). Returns "started", "adopted" or "upgraded"."""
    import ray

    from actors import options
    from actors.control import RemoteControl

    ns = settings.namespace
    outcome = "started"
    old = None if fresh_cluster else _get_actor("control", ns)
    if old is not None:
        try:
            running = ray.get(old.version.remote(), timeout=15)
        except Exception:  # noqa: BLE001 - a broken server is replaced
            running = None
        if running == settings.code_version and _healthy(settings.url):
            return "adopted"
        # Another version: replace the control plane (its state is in the store; live
        # runners are found again by name) and the per-host and per-session actors.
        outcome = "upgraded"
        ray.kill(old, no_restart=True)
        _kill_named(ns)  # HostActors and SessionActors of the old code; runners stay
        _wait_gone("control", ns)
    node_id = ray.get_runtime_context().get_node_id()
    node_ip = ray.util.get_node_ip_address()
    control = RemoteControl.options(**options.control_options(ns, node_id)).remote(
        settings.to_dict()
    )
    # Everything at once: the ControlActor starts (and enrolls this node: its HostActor)
    # while Serve starts its controller and the API replica, whose AppState waits for the
    # ControlActor by itself. In sequence this cost ~3 s of a cold start.
    started = control.start.remote()
    deploy_api = ray.remote(num_cpus=0, max_calls=1, max_retries=0)(_deploy_api)
    deployed = deploy_api.options(scheduling_strategy=options.pinned(node_id)).remote(
        settings.to_dict(), node_ip
    )
    if not fresh_cluster:  # an older replica may still answer on the port: wait for ours
        ray.get(deployed)
    _wait_http(f"{_local_url(settings)}/healthz", timeout=120, failed=deployed)
    ray.get(started)
    return outcome


def _deploy_api(settings: dict, node_ip: str) -> None:
    """Start Serve and deploy the API (its replica pinned to the server's node). A task of
    its own (a worker that exits after it, `max_calls=1`) rather than this driver, which
    then never imports Serve and the FastAPI app (~40 MiB it would keep while it waits)."""
    from ray import serve

    # Serve's controller starts (in a process of its own) while this worker imports the
    # app, instead of after it (~0.8 s CPU).
    with ThreadPoolExecutor(1) as pool:
        started = pool.submit(serve.start, proxy_location="Disabled")
        from serve_app import OmnigentIngress

        started.result()
    from actors import options

    ns = Settings(**settings).namespace
    serve.run(
        OmnigentIngress.options(  # type: ignore[attr-defined]  # @serve.deployment made it one
            num_replicas=Settings(**settings).replicas_here(),
            ray_actor_options=options.api_options(node_ip),
        ).bind(settings),
        name=ns,
        route_prefix=f"/{ns}",
        blocking=False,
    )


def _wait_gone(name: str, namespace: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while _get_actor(name, namespace) is not None and time.monotonic() < deadline:
        time.sleep(0.1)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _local_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    host = "[::1]" if host == "::" else host
    return f"http://{host}:{settings.port}"


def _wait_http(url: str, timeout: float, failed=None, headers=None, ok=None) -> None:
    """Until `url` answers 200 (with a JSON body `ok` accepts, if given); raises what the
    task `failed` (an ObjectRef) raised if it fails first."""
    import ray

    deadline = time.monotonic() + timeout
    # One client: `httpx.get` builds a new one (and its SSL context, ~20 ms of CPU) per call.
    with httpx.Client(timeout=2, headers=headers) as client:
        while time.monotonic() < deadline:
            try:
                r = client.get(url)
                if r.status_code == 200 and (ok is None or ok(r.json())):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if failed is not None and ray.wait([failed], timeout=0)[0]:
                ray.get(failed)  # raises why the deployment failed
                failed = None
            time.sleep(0.05)
    raise RuntimeError(f"the API did not come up at {url}")


def public_url(bind_host: str, port: int, node_ip: str) -> str:
    """A URL others can reach: a wildcard bind address is shown as the node's address."""
    host = node_ip if bind_host in ("0.0.0.0", "::", "") else bind_host
    return f"http://{host}:{port}"


def join_line(ray_address: str, key: str, ray_token: str | None) -> str:
    """The command a machine runs to become the key's user's host. Secrets go in the
    environment of `ray start` (never its arguments, which `ps` shows to everyone)."""
    auth = f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN={ray_token} " if ray_token else ""
    return f"{auth}{JOIN_ENV}={key} ray start --address={ray_address}"


def serve(settings: Settings, address: str | None, node_ip: str | None) -> int:
    """`omnigent serve` with the settings the CLI read (Settings.from_env)."""
    t0 = time.monotonic()
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    use_ray_token(state, remember=True)  # before Ray is imported: it reads them then
    import ray

    token = prepare_state(settings)
    _init_ray(address, node_ip or _recorded_node_ip(state, address), settings)
    outcome = deploy(settings, fresh_cluster=address is None)
    ctx = ray.get_runtime_context()
    node_ip = ray.util.get_node_ip_address()
    url = public_url(settings.host, settings.port, node_ip)
    host_id = ray.get(_get_actor("control", settings.namespace).own_host.remote())["id"]
    # The API replica follows the host table by long-poll: "online" is printed once the
    # API itself says so (it started beside the ControlActor, not after it).
    _wait_http(
        f"{_local_url(settings)}/v1/hosts/{host_id}",
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
        ok=lambda body: body.get("status") == "online",
    )
    info = {
        "url": url,
        "ray_address": ctx.gcs_address,
        "namespace": settings.namespace,
        "pid": os.getpid() if address is None else None,
        "embedded": address is None,
        "user": settings.admin_user,
        "host_id": host_id,
        "version": settings.code_version,
    }
    write_private(state / "server.json", json.dumps(info, indent=2) + "\n")
    line = join_line(
        ctx.gcs_address, join_key(server_secret(state), settings.admin_user), current_ray_token()
    )
    say = lambda text: print(text, flush=True)  # noqa: E731
    say(
        f"omnigent server {outcome} in {time.monotonic() - t0:.1f}s (version "
        f"{settings.code_version})"
    )
    say(f"  URL:    {url}")
    say(f"  user:   {settings.admin_user} (host {host_id} online)")
    say(
        f"  join a machine as a host of {settings.admin_user} (`omnigent join-line USER` "
        "prints the line for another user):"
    )
    say(f"    {line}")
    if address is not None:
        # Detached: this process is only the deployer. The bearer token is not printed
        # here, where output often ends up in logs.
        say(f"  token:  in {state / 'token'} (mode 0600)")
        say(f"  web UI: {url}/ (sign in with that token)")
        say("  the server keeps running after this command; `omnigent stop` stops it")
        ray.shutdown()
        return 0
    # The web UI signed in: the token rides in the fragment, which no browser sends to
    # the server (so it is in no access log); the page moves it to sessionStorage.
    say(f"  web UI: {url}/#token={token}")
    say(f"  token (saved in {state}/token):")
    say(token)
    _wait_for_signal()
    print("stopping…", flush=True)
    stop_server(settings)
    ray.shutdown()
    return 0


def _recorded_node_ip(state: Path, address: str | None) -> str | None:
    """On a machine whose node `omnigent ray-start` started, the IP it gave that node."""
    if address is None:
        return None
    try:
        return json.loads((state / "ray-node.json").read_text()).get("node_ip")
    except (OSError, ValueError):
        return None


def _wait_for_signal() -> None:
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own
        signal.signal(sig, lambda *_: stopping.set())
    while not stopping.wait(0.5):
        pass


def stop_server(settings: Settings, stop_nodes: bool = False) -> bool:
    """Stop the server on the connected cluster: runners first (state is kept), then the
    Serve application and every actor of the server (and, with `stop_nodes`, the other
    machines' nodes that `omnigent ray-start` started). False if none was running."""
    import ray
    from ray import serve
    from ray.util import list_named_actors

    control = _get_actor("control", settings.namespace)
    if control is None:
        return False
    try:
        ray.get(control.shutdown.remote(), timeout=30)
    except Exception:  # noqa: BLE001 - stopping regardless
        pass
    if stop_nodes:
        own = f"node_{ray.get_runtime_context().get_node_id()}"
        for entry in list_named_actors(all_namespaces=True):
            if (
                entry["namespace"] == settings.namespace
                and entry["name"].startswith("node_")
                and entry["name"] != own
            ):
                handle = _get_actor(entry["name"], settings.namespace)
                try:
                    ray.get(handle.stop_node.remote(), timeout=10)
                except Exception:  # noqa: BLE001 - a node already gone needs no stop
                    pass
    try:
        serve.delete(settings.namespace)
    except Exception:  # noqa: BLE001
        pass
    _kill_named(settings.namespace)
    ray.kill(control, no_restart=True)
    return True


def stop(settings: Settings, address: str | None, stop_nodes: bool = False) -> int:
    """`omnigent stop`: an embedded server is sent SIGTERM; one on a cluster is stopped
    through Ray."""
    state = Path(settings.state_dir)
    try:
        info = json.loads((state / "server.json").read_text())
    except (OSError, ValueError):
        info = {}
    if info.get("embedded") and info.get("pid") and address is None:
        return _stop_pid(info["pid"])
    use_ray_token(state)  # before Ray is imported
    import ray

    address = address or info.get("ray_address") or "auto"
    if not _answers(address):  # else ray.init waits a minute for a GCS that is gone
        print(f"no Ray cluster answers at {address}: no server to stop", flush=True)
        return 0
    _init_ray(address, _recorded_node_ip(state, "x"), settings)
    stopped = stop_server(settings, stop_nodes)
    ray.shutdown()
    print(
        "server stopped" if stopped else "no server of this state dir runs on the cluster",
        flush=True,
    )
    return 0


def _answers(address: str, timeout: float = 3) -> bool:
    """Does a GCS listen at `host:port`? ("auto" and other forms: assumed so.)"""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return True
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def _stop_pid(pid: int) -> int:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print("the server is not running", flush=True)
        return 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("server stopped", flush=True)
            return 0
        time.sleep(0.2)
    print(f"the server (pid {pid}) did not stop within 60 s", flush=True)
    return 1
