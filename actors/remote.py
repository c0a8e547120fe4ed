"""Transitional: each actor module now defines its own Ray actor class (`RemoteX`
beside `XActor`), so that imports run one way."""

import ray

from actors.control import ControlActor
from actors.host import RemoteHost
from actors.session import RemoteSession

RemoteControl = ray.remote(ControlActor)

__all__ = ["RemoteControl", "RemoteHost", "RemoteSession"]
