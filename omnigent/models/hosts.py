"""Hosts and their filesystem."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from omnigent.models.common import ListEnvelope


class HostPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(examples=["host_1c2d3e4f5a6b7c8d9e0f1a2b"])
    name: str
    status: Literal["online", "offline"]
    platform: str | None
    registered_at: int
    runner_count: int
    owner: str
    last_seen_at: int | None
    cpus: float | None = None
    memory_bytes: int | None = None


class HostList(BaseModel):
    hosts: list[HostPublic]


class HostEntry(BaseModel):
    name: str
    path: str = Field(description="Absolute path on the host.")
    type: Literal["file", "directory", "other"]
    bytes: int | None
    modified_at: int | None


class HostEntryList(ListEnvelope):
    data: list[HostEntry]


class ClusterInfo(BaseModel):
    """What a machine needs to join as the caller's host."""

    model_config = ConfigDict(extra="allow")
    ray_address: str
    namespace: str
    join_key: str
