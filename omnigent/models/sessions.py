"""Sessions and runners: request bodies (`…Create`) and answers (`…Public`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnigent.domain.branches import validate_branch_name
from omnigent.models.common import ListEnvelope

SessionStatus = Literal["idle", "launching", "running", "runner_exited", "runner_failed"]


class TerminalSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    command: str = Field(min_length=1, examples=["bash"])
    args: list[str] = []
    env: dict[str, str] = {}
    scrollback: int | None = Field(default=None, ge=1024, le=64 * 2**20,
                                   description="Bytes of output replayed on attach.")


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=200, examples=["coder"])
    terminals: dict[str, TerminalSpec] = Field(
        default={}, description="The terminals a user may launch, by name.",
        examples=[{"shell": {"command": "bash", "args": ["--norc"]}}])


class GitOptions(BaseModel):
    branch_name: str = Field(examples=["agent/fix-login"])
    base_branch: str | None = None
    existing_worktree: bool = False

    @field_validator("branch_name")
    @classmethod
    def _branch(cls, value: str) -> str:
        return validate_branch_name(value)

    @field_validator("base_branch")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        return None if value is None else validate_branch_name(value)


class SessionCreate(BaseModel):
    title: str | None = Field(default=None, max_length=1000, examples=["fix the login bug"])
    agent: AgentSpec
    host_id: str | None = Field(default=None, description="Launch a runner there at once.")
    workspace: str | None = Field(default=None, description="Required with host_id.")
    git: GitOptions | None = None


class SessionPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(examples=["conv_3fa9c2d1e4b5"])
    object: Literal["session"] = "session"
    title: str | None
    owner: str
    agent: AgentSpec
    agent_id: str | None = Field(default=None, description="Stable id of the agent spec.")
    agent_name: str | None = None
    host_id: str | None
    runner_id: str | None
    workspace: str | None
    git_branch: str | None
    status: SessionStatus
    created_at: int
    updated_at: int | None = None


class SessionList(ListEnvelope):
    data: list[SessionPublic]


class SessionDeleted(BaseModel):
    id: str
    object: Literal["session.deleted"] = "session.deleted"
    deleted: bool = True


class RunnerCreate(BaseModel):
    session_id: str = Field(min_length=1, examples=["conv_3fa9c2d1e4b5"])
    workspace: str = Field(min_length=1, examples=["/home/alice/project"])
    git: GitOptions | None = None


class RunnerLaunched(BaseModel):
    runner_id: str
    status: str = Field(examples=["launching"])


class RunnerPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    runner_id: str
    session_id: str
    host_id: str
    status: str
    started_at: int | None
