"""One error tree for the whole server. It knows nothing of HTTP.

    OmnigentError
    ├── InvalidRequest            bad input the caller can fix
    │   ├── InvalidPath
    │   ├── InvalidBranch
    │   ├── InvalidWorkspace
    │   └── AlreadyBound
    ├── PayloadTooLarge
    ├── Unauthenticated
    ├── Forbidden
    ├── NotFound
    ├── Conflict
    │   ├── HostOffline
    │   └── RunnerNotBound
    ├── HostIOError               the host answered with an I/O failure
    ├── LaunchFailed
    ├── Unavailable
    │   └── RunnerUnavailable
    └── UpstreamTimeout           the host did not answer in time

`omnigent.api.errors` maps each class (by walking its MRO) to an HTTP status.
Every class takes `(message, code=None)` so that instances pickle across Ray.
"""

from __future__ import annotations


class OmnigentError(Exception):
    code = "internal_error"

    def __init__(self, message: str, code: str | None = None) -> None:
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


class InvalidPath(InvalidRequest):
    code = "invalid_path"


class InvalidBranch(InvalidRequest):
    code = "invalid_branch"


class InvalidWorkspace(InvalidRequest):
    code = "invalid_workspace"


class AlreadyBound(InvalidRequest):
    code = "runner_already_bound"


class PayloadTooLarge(OmnigentError):
    code = "payload_too_large"


class Unauthenticated(OmnigentError):
    code = "unauthenticated"


class Forbidden(OmnigentError):
    code = "forbidden"


class NotFound(OmnigentError):
    code = "not_found"


class Conflict(OmnigentError):
    code = "conflict"


class HostOffline(Conflict):
    code = "host_offline"


class RunnerNotBound(Conflict):
    code = "runner_not_bound"


class HostIOError(OmnigentError):
    code = "host_io_error"


class LaunchFailed(OmnigentError):
    code = "launch_failed"


class Unavailable(OmnigentError):
    code = "unavailable"


class RunnerUnavailable(Unavailable):
    code = "runner_unavailable"


class UpstreamTimeout(OmnigentError):
    code = "host_timeout"
