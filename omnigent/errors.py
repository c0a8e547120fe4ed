"""One error tree for the whole server. It knows nothing of HTTP: `omnigent.wire` maps
each branch (by walking the MRO) to a status and a WebSocket close code.

Every error code the API can answer with is a class here, so a raise site names what
went wrong and the code cannot be misspelt. Raise a new instance each time (never keep
one in a module global: its traceback would grow and be shared across requests); where
a caller chooses the error (`actors.calls.call(..., unreachable=...)`) it passes the
class, and it is instantiated at the point of failure.

    OmnigentError
    ├── InvalidRequest              bad input the caller can fix (400)
    │   ├── InvalidPath, InvalidBranch, InvalidWorkspace, AlreadyBound
    │   ├── InvalidContent, InvalidEdit, InvalidGlob, InvalidQuery, InvalidCommand
    │   ├── InvalidSessionKey, InvalidUpload, UploadIncomplete, WorkspaceRequired
    │   ├── IsADirectory, NotAFile, NotText, TerminalNotDeclared
    ├── PayloadTooLarge (413)
    ├── Unauthenticated (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    │   ├── HostNotFound, SessionNotFound, RunnerNotFound, FileNotFound, PathNotFound,
    │   ├── EnvironmentNotFound, ResourceNotFound, TerminalNotFound, TextNotFound,
    │   ├── TokenNotFound, NotChanged
    ├── Conflict (409)
    │   ├── HostOffline, RunnerNotBound, TerminalExists, TooManyTerminals,
    │   ├── NotADirectory, DirectoryNotEmpty, AmbiguousMatch
    ├── RangeNotSatisfiable (416)
    ├── HostIOError (502)          the host answered with an I/O failure
    ├── LaunchFailed (502)
    ├── Unavailable (503)
    │   ├── ControlUnavailable, RunnerUnavailable
    └── UpstreamTimeout (504)      the host did not answer in time
"""

from __future__ import annotations


class OmnigentError(Exception):
    code = "internal_error"
    default_message = "internal server error"

    def __init__(self, message: str | None = None, code: str | None = None) -> None:
        message = self.default_message if message is None else message
        super().__init__(message, code)
        self.message = message
        if code is not None:
            self.code = code

    def __reduce__(self):
        return (type(self), (self.message, self.code))

    def __str__(self) -> str:
        return self.message


class InvalidRequest(OmnigentError):
    code = "invalid_request"
    default_message = "invalid request"


class InvalidPath(InvalidRequest):
    code = "invalid_path"


class InvalidBranch(InvalidRequest):
    code = "invalid_branch"


class InvalidWorkspace(InvalidRequest):
    code = "invalid_workspace"


class AlreadyBound(InvalidRequest):
    code = "runner_already_bound"


class InvalidContent(InvalidRequest):
    code = "invalid_content"


class InvalidEdit(InvalidRequest):
    code = "invalid_edit"


class InvalidGlob(InvalidRequest):
    code = "invalid_glob"


class InvalidQuery(InvalidRequest):
    code = "invalid_query"


class InvalidCommand(InvalidRequest):
    code = "invalid_command"


class InvalidSessionKey(InvalidRequest):
    code = "invalid_session_key"


class InvalidUpload(InvalidRequest):
    code = "invalid_upload"


class UploadIncomplete(InvalidRequest):
    code = "upload_incomplete"


class WorkspaceRequired(InvalidRequest):
    code = "workspace_required"


class IsADirectory(InvalidRequest):
    code = "is_a_directory"


class NotAFile(InvalidRequest):
    code = "not_a_file"


class NotText(InvalidRequest):
    code = "not_text"


class TerminalNotDeclared(InvalidRequest):
    code = "terminal_not_declared"


class PayloadTooLarge(OmnigentError):
    code = "payload_too_large"
    default_message = "request body too large"


class Unauthenticated(OmnigentError):
    code = "unauthenticated"
    default_message = "missing or invalid bearer token"


class Forbidden(OmnigentError):
    code = "forbidden"
    default_message = "forbidden"


class NotFound(OmnigentError):
    code = "not_found"
    default_message = "not found"


class HostNotFound(NotFound):
    code = "host_not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class RunnerNotFound(NotFound):
    code = "runner_not_found"


class FileNotFound(NotFound):
    code = "file_not_found"


class PathNotFound(NotFound):
    code = "path_not_found"


class EnvironmentNotFound(NotFound):
    code = "environment_not_found"


class ResourceNotFound(NotFound):
    code = "resource_not_found"


class TerminalNotFound(NotFound):
    code = "terminal_not_found"


class TextNotFound(NotFound):
    code = "text_not_found"


class TokenNotFound(NotFound):
    code = "token_not_found"


class NotChanged(NotFound):
    code = "not_changed"


class Conflict(OmnigentError):
    code = "conflict"
    default_message = "conflict"


class HostOffline(Conflict):
    code = "host_offline"
    default_message = "the host is offline"


class RunnerNotBound(Conflict):
    code = "runner_not_bound"
    default_message = "no runner is bound to the session"


class TerminalExists(Conflict):
    code = "terminal_exists"


class TooManyTerminals(Conflict):
    code = "too_many_terminals"


class NotADirectory(Conflict):
    code = "not_a_directory"


class DirectoryNotEmpty(Conflict):
    code = "directory_not_empty"


class AmbiguousMatch(Conflict):
    code = "ambiguous_match"


class RangeNotSatisfiable(OmnigentError):
    code = "range_not_satisfiable"
    default_message = "the requested range is not satisfiable"


class HostIOError(OmnigentError):
    code = "host_io_error"
    default_message = "the host could not do that"


class LaunchFailed(OmnigentError):
    code = "launch_failed"
    default_message = "the runner could not be launched"


class Unavailable(OmnigentError):
    code = "unavailable"
    default_message = "the service is unavailable"


class ControlUnavailable(Unavailable):
    """The ControlActor did not answer (restarting, or rolled forward)."""

    default_message = "the control plane is unavailable"


class RunnerUnavailable(Unavailable):
    code = "runner_unavailable"
    default_message = "the session's runner is not reachable"


class UpstreamTimeout(OmnigentError):
    code = "host_timeout"
    default_message = "the host did not answer in time"


def all_errors() -> list[type[OmnigentError]]:
    """Every class of the tree, the root first (for the API's documentation)."""
    found, todo = [], [OmnigentError]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found
