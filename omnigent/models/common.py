"""Shapes every operation shares: the error body and the list envelope."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NO_NUL = "^[^\\x00]*$"  # a string without NUL
ENV_NAME = "^[^\\x00=]+$"  # an environment variable's name


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorInfo(BaseModel):
    code: str = Field(
        description="Stable snake_case code; clients key on it.", examples=["session_not_found"]
    )
    message: str = Field(description="A human sentence.", examples=["session not found"])
    details: list[ErrorDetail] | None = Field(
        default=None, description="422 only: every field that failed validation."
    )


class ErrorBody(BaseModel):
    """The one error shape of every 4xx and 5xx answer."""

    error: ErrorInfo


class ListEnvelope(BaseModel):
    """The contract's list envelope; `data` is typed by each subclass."""

    model_config = ConfigDict(extra="allow")
    object: str = "list"
    data: list[Any]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses: the error body as schema, and the error
    codes that answer with that status (from the error tree) in the description."""
    from omnigent import errors, wire

    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        if status == wire.VALIDATION_STATUS:
            codes = ["validation_error"]
        else:
            codes = sorted({c.code for c in errors.all_errors() if wire.status_for(c()) == status})
        out[status] = {
            "model": ErrorBody,
            "description": _REASONS.get(status, "error")
            + " (`error.code`: "
            + ", ".join(f"`{c}`" for c in codes)
            + ")",
        }
    return out


_REASONS = {
    400: "Invalid request",
    401: "Missing or invalid bearer token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Payload too large",
    416: "Range not satisfiable",
    422: "The request does not fit the schema",
    502: "The host failed",
    503: "Unavailable",
    504: "The host did not answer in time",
}
