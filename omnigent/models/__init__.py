"""Typed wire models: request bodies (`…Create` and the like) and answers (`…Public`,
`…Result`), pydantic. The routes declare them, so the OpenAPI document is the API."""

from omnigent.models.common import Deleted, ErrorBody, ErrorInfo, ListEnvelope
from omnigent.models.hosts import ClusterInfo, HostEntry, HostEntryList, HostList, HostPublic
from omnigent.models.resources import (
    Change,
    ChangeList,
    DeleteResult,
    EditFile,
    EditResult,
    FileContent,
    FileDiff,
    FileFetched,
    FsEntry,
    FsListing,
    ResourceDeleted,
    ResourceList,
    ResourcePublic,
    SearchResult,
    ShellCommand,
    ShellResult,
    TerminalCreate,
    TerminalTransfer,
    WriteFile,
    WriteResult,
)
from omnigent.models.sessions import (
    AgentSpec,
    GitOptions,
    RunnerCreate,
    RunnerLaunched,
    RunnerPublic,
    SessionCreate,
    SessionDeleted,
    SessionList,
    SessionPublic,
    TerminalSpec,
)

LaunchRunner = RunnerCreate  # the name older code and tests use

__all__ = [
    "AgentSpec", "Change", "ChangeList", "ClusterInfo", "DeleteResult", "Deleted", "EditFile",
    "EditResult", "ErrorBody", "ErrorInfo", "FileContent", "FileDiff", "FileFetched",
    "FsEntry", "FsListing", "GitOptions", "HostEntry", "HostEntryList", "HostList",
    "HostPublic", "LaunchRunner", "ListEnvelope", "ResourceDeleted", "ResourceList",
    "ResourcePublic", "RunnerCreate", "RunnerLaunched", "RunnerPublic", "SearchResult",
    "SessionCreate", "SessionDeleted", "SessionList", "SessionPublic", "ShellCommand",
    "ShellResult", "TerminalCreate", "TerminalSpec", "TerminalTransfer", "WriteFile",
    "WriteResult",
]
