"""Sessions and runners: request bodies (`…Create`) and answers (`…Public`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnigent.domain.branches import validate_branch_name
from omnigent.models.common import ENV_NAME, NO_NUL, ListEnvelope


def _string(**schema: Any) -> dict[str, Any]:
    return {"type": "string", **schema}


# The rules of `git check-ref-format --branch`, as omnigent.domain.branches checks them
# (400 `invalid_branch`), told to clients (and fuzzers) as JSON Schema.
BRANCH_SCHEMA: dict[str, Any] = {
    "minLength": 1,
    "maxLength": 200,
    "pattern": r"^[^\x00-\x20\x7f~^:?*\[\\]+$",
    "not": {
        "anyOf": [
            _string(pattern=p)
            for p in (
                r"^-",
                r"^/",
                r"/$",
                r"//",
                r"\.$",
                r"\.lock$",
                r"\.lock/",
                r"\.\.",
                r"@\{",
                r"^@$",
                r"(^|/)\.",
                r"^HEAD$",
            )
        ]
    },
}
STRICT = ConfigDict(strict=True)  # request bodies: `0` is not `false`, `"1"` is not `1`

SessionStatus = Literal["idle", "launching", "running", "runner_exited", "runner_failed"]


class TerminalSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    # what no exec() can take is refused when the spec is given (422)
    command: str = Field(min_length=1, examples=["bash"], pattern=NO_NUL)
    args: list[Annotated[str, Field(pattern=NO_NUL)]] = []
    env: dict[Annotated[str, Field(pattern=ENV_NAME)], Annotated[str, Field(pattern=NO_NUL)]] = (
        Field(default={}, json_schema_extra={"additionalProperties": False})
    )
    scrollback: int | None = Field(
        default=None, ge=1024, le=64 * 2**20, description="Bytes of output replayed on attach."
    )


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=200, examples=["coder"])
    terminals: dict[str, TerminalSpec] = Field(
        default={},
        description="The terminals a user may launch, by name.",
        examples=[{"shell": {"command": "bash", "args": ["--norc"]}}],
    )


class GitOptions(BaseModel):
    model_config = STRICT
    branch_name: str = Field(examples=["agent/fix-login"], json_schema_extra=BRANCH_SCHEMA)
    base_branch: str | None = Field(
        default=None, json_schema_extra={"anyOf": [_string(**BRANCH_SCHEMA), {"type": "null"}]}
    )
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
    model_config = STRICT
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
    model_config = STRICT
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
