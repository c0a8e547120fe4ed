"""Session resources: the generic resource object, files, terminals, environments."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from omnigent.models.common import NO_NUL, ListEnvelope

ResourceType = Literal["environment", "terminal", "file"]
Encoding = Literal["utf-8", "base64"]


class ResourcePublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(examples=["terminal_shell_main"])
    object: Literal["session.resource"] = "session.resource"
    type: ResourceType
    session_id: str
    name: str
    metadata: dict[str, Any] = {}
    environment: str | None = Field(default=None, description="Terminals: their environment.")


class ResourceList(ListEnvelope):
    data: list[ResourcePublic]


class ResourceDeleted(BaseModel):
    id: str
    object: Literal["session.resource.deleted"] = "session.resource.deleted"
    deleted: bool = True


# terminals ---------------------------------------------------------------------------
class TerminalCreate(BaseModel):
    model_config = ConfigDict(strict=True)
    terminal: str = Field(
        min_length=1,
        max_length=64,
        examples=["shell"],
        description="A terminal name the session's agent spec declares.",
    )
    session_key: str = Field(min_length=1, max_length=64, examples=["main"])


class TerminalTransfer(BaseModel):
    model_config = ConfigDict(strict=True)
    target_session_id: str = Field(min_length=1, max_length=100, examples=["conv_new456"])


# environments ------------------------------------------------------------------------
class FsEntry(BaseModel):
    id: str = Field(description="The entry's path, relative to the environment root.")
    object: Literal["session.environment.filesystem.entry"] = "session.environment.filesystem.entry"
    name: str
    path: str
    type: Literal["file", "directory", "other"]
    bytes: int | None
    modified_at: int | None


class FsListing(ListEnvelope):
    data: list[FsEntry]


class FileContent(BaseModel):
    object: Literal["session.environment.filesystem.file_content"] = (
        "session.environment.filesystem.file_content"
    )
    path: str
    content_type: str
    bytes: int
    truncated: bool
    encoding: Encoding
    content: str


BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class WriteFile(BaseModel):
    # base64 content must be base64 (else 400 `invalid_content`): said in the schema too
    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "if": {"properties": {"encoding": {"const": "base64"}}, "required": ["encoding"]},
            "then": {"properties": {"content": {"pattern": BASE64}}},
        },
    )
    content: str = Field(examples=["print('hello world')\n"])
    encoding: Encoding = "utf-8"


class WriteResult(BaseModel):
    object: Literal["session.environment.filesystem.write_result"] = (
        "session.environment.filesystem.write_result"
    )
    operation: Literal["created", "updated"]
    path: str
    created: bool
    bytes_written: int
    entry: FsEntry | None


class EditFile(BaseModel):
    model_config = ConfigDict(strict=True)
    old_text: str = Field(min_length=1, examples=["hello world"])
    new_text: str = Field(examples=["goodbye world"])


class EditResult(BaseModel):
    object: Literal["session.environment.filesystem.edit_result"] = (
        "session.environment.filesystem.edit_result"
    )
    operation: Literal["edited"] = "edited"
    path: str
    replacements: int
    bytes_before: int
    bytes_after: int
    entry: FsEntry | None


class DeleteResult(BaseModel):
    object: Literal["session.environment.filesystem.delete_result"] = (
        "session.environment.filesystem.delete_result"
    )
    operation: Literal["deleted"] = "deleted"
    path: str
    deleted: bool
    type: Literal["file", "directory", "other"]
    bytes_deleted: int | None
    entries_deleted: int


class Change(BaseModel):
    object: Literal["session.environment.filesystem.entry"] = "session.environment.filesystem.entry"
    path: str
    name: str
    status: Literal["created", "modified", "deleted"]
    bytes: int | None
    modified_at: int | None


class ChangeList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Change]
    has_more: bool


class FileDiff(BaseModel):
    object: Literal["session.environment.filesystem.file_diff"] = (
        "session.environment.filesystem.file_diff"
    )
    path: str
    status: Literal["created", "modified", "deleted"]
    truncated: bool
    encoding: Encoding
    before: str | None = Field(description="At session start; null if created since.")
    after: str | None = Field(description="Now; null if deleted.")


class SearchResult(ListEnvelope):
    data: list[FsEntry]
    truncated: bool = Field(description="A scan budget cut the search short.")


class ShellCommand(BaseModel):
    model_config = ConfigDict(strict=True)
    # a NUL is refused by the runner (400 `invalid_command`); the schema says so
    command: str = Field(
        min_length=1,
        max_length=1024 * 1024,
        examples=["npm test"],
        json_schema_extra={"pattern": NO_NUL},
    )
    timeout: float = Field(default=120, ge=1, le=3600, description="Seconds.")


class ShellResult(BaseModel):
    object: Literal["session.environment.shell_result"] = "session.environment.shell_result"
    exit_code: int | None = Field(description="null when the command timed out.")
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool
    cwd: str


class FileFetched(BaseModel):
    """An uploaded file brought to the runner's host (not in the reference)."""

    model_config = ConfigDict(extra="allow")
    file_id: str
    path: str
    bytes: int
    sha256: str
