"""Pydantic wire schemas for request bodies (responses are plain dicts from the actors)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnigent.domain.branches import validate_branch_name


class TerminalSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    command: str = Field(min_length=1)
    args: list[str] = []
    env: dict[str, str] = {}
    scrollback: int | None = Field(default=None, ge=1024, le=64 * 2**20)


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=200)
    terminals: dict[str, TerminalSpec] = {}


class GitOptions(BaseModel):
    branch_name: str
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


class LaunchRunner(BaseModel):
    session_id: str = Field(min_length=1)
    workspace: str = Field(min_length=1)
    git: GitOptions | None = None


class SessionCreate(BaseModel):
    title: str | None = Field(default=None, max_length=1000)
    agent: AgentSpec
    host_id: str | None = None
    workspace: str | None = None
    git: GitOptions | None = None


# environment ------------------------------------------------------------------------
class WriteFile(BaseModel):
    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"


class EditFile(BaseModel):
    old_text: str = Field(min_length=1)
    new_text: str


class ShellCommand(BaseModel):
    command: str = Field(min_length=1, max_length=1024 * 1024)
    timeout: float = Field(default=120, ge=1, le=3600)


# terminals --------------------------------------------------------------------------
class TerminalCreate(BaseModel):
    terminal: str = Field(min_length=1, max_length=64)
    session_key: str = Field(min_length=1, max_length=64)


class TerminalTransfer(BaseModel):
    target_session_id: str = Field(min_length=1, max_length=100)
