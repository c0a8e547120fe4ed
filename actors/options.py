"""The one place with `ray.remote` options: where each actor runs and how it lives."""

from __future__ import annotations

from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def pinned(node_id: str) -> NodeAffinitySchedulingStrategy:
    """Run on exactly this node; fail at once if it is dead."""
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def control_options(namespace: str, node_id: str) -> dict:
    return dict(
        name="control",
        namespace=namespace,
        lifetime="detached",
        num_cpus=0,
        max_concurrency=1000,
        scheduling_strategy=pinned(node_id),
    )


def api_options(node_ip: str | None = None) -> dict:
    """The API replicas: on the server's node (its IP), or on the head."""
    where = f"node:{node_ip}" if node_ip else "node:__internal_head__"
    return {"num_cpus": 0, "resources": {where: 0.001}}


def session_options(namespace: str, session_id: str, node_id: str) -> dict:
    return dict(
        name=f"session_{session_id}",
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=100,
        scheduling_strategy=pinned(node_id),
    )


def host_options(namespace: str, node_id: str) -> dict:
    # Threaded: directory listings and git commands block; several may run at once.
    # Detached: the ControlActor outlives the driver that started it, and only detached
    # actors may still be created for a job whose driver has gone.
    return dict(
        name=f"node_{node_id}",
        namespace=namespace,
        lifetime="detached",
        num_cpus=0,
        max_concurrency=16,
        scheduling_strategy=pinned(node_id),
        max_restarts=0,
    )


def runner_options(namespace: str, runner_id: str, node_id: str) -> dict:
    return dict(
        name=runner_id,
        namespace=namespace,
        lifetime="detached",
        num_cpus=0,
        max_concurrency=100,
        scheduling_strategy=pinned(node_id),
        max_restarts=0,
    )
