"""The plain actor classes turned into Ray actors, in one place."""

import ray

from actors.control import ControlActor
from actors.host import HostActor
from actors.runner import RunnerActor
from actors.session import SessionActor

RemoteControl = ray.remote(ControlActor)
RemoteSession = ray.remote(SessionActor)
RemoteHost = ray.remote(HostActor)
RemoteRunner = ray.remote(RunnerActor)
