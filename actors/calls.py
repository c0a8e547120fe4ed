"""Calls across Ray, with deadlines, mapped onto the error tree. The one place that
knows Ray's exception types.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import ray
from ray import exceptions as rex

from omnigent.errors import OmnigentError, UpstreamTimeout

UNREACHABLE = (rex.RayActorError, rex.ActorUnavailableError, rex.ActorDiedError)


def unwrap(exc: BaseException) -> BaseException:
    """The OmnigentError an actor raised, if that is what `exc` carries."""
    if isinstance(exc, rex.RayTaskError) and isinstance(exc.cause, OmnigentError):
        return exc.cause
    return exc


async def call(
    ref: ray.ObjectRef,
    *,
    timeout: float | None,
    unreachable: Callable[[], OmnigentError],
    timeout_error: Callable[[], OmnigentError] = UpstreamTimeout,
) -> Any:
    """Await `ref`; a dead or unreachable actor raises `unreachable()`, a missed deadline
    `timeout_error()` (504 by default), an OmnigentError raised remotely is re-raised as
    is. The errors are made here, a fresh instance per failure."""
    try:
        async with asyncio.timeout(timeout):  # no extra task, unlike asyncio.wait_for
            return await ref
    except (TimeoutError, rex.GetTimeoutError):
        raise timeout_error() from None
    except UNREACHABLE:
        raise unreachable() from None
    except rex.RayTaskError as exc:
        cause = unwrap(exc)
        if cause is exc:
            raise
        raise cause from None


def get_named(name: str, namespace: str):
    """The handle of a named actor, or None if no such actor lives."""
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None
