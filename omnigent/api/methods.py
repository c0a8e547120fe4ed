"""Which methods the API takes on a path, read from its own OpenAPI document: the `Allow`
header of every 405, and the check the forwarding route makes before it sends a request
to a runner (a path the document knows answers 405 for a method it does not list, a path
it does not know 404), so that what the API answers is what it documents."""

from __future__ import annotations

import re
from typing import Any

_PARAM = re.compile(r"\{([^}]+)\}")


def _regex(template: str) -> re.Pattern[str]:
    out, last = [], 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[last : m.start()]))
        out.append(".*" if m.group(1) == "path" else "[^/]+")  # `{path}`: a path converter
        last = m.end()
    out.append(re.escape(template[last:]))
    return re.compile("".join(out))


class DocumentedMethods:
    def __init__(self, paths: dict[str, dict[str, Any]]) -> None:
        self._routes = [
            (_regex(template), frozenset(m.upper() for m in ops)) for template, ops in paths.items()
        ]

    def allowed(self, path: str) -> frozenset[str]:
        """Every method some documented operation takes on `path` (empty: none)."""
        found: set[str] = set()
        for regex, methods in self._routes:
            if regex.fullmatch(path):
                found |= methods
        return frozenset(found)

    @staticmethod
    def allow_header(methods: frozenset[str]) -> str:
        return ", ".join(sorted(methods))


def documented_methods(app: Any) -> DocumentedMethods:
    """The app's matcher, made from its document on first use."""
    found = getattr(app.state, "documented_methods", None)
    if found is None:
        found = app.state.documented_methods = DocumentedMethods(app.openapi()["paths"])
    return found


def method_not_allowed(app: Any, path: str, fallback: str | None = None):
    """The 405 answer for `path`: the contract's body, `Allow` from the document."""
    from fastapi.responses import JSONResponse

    from omnigent import wire

    methods = documented_methods(app).allowed(path)
    allow = DocumentedMethods.allow_header(methods) if methods else fallback
    return JSONResponse(
        wire.error_body("method_not_allowed", "method not allowed here"),
        405,
        headers={"Allow": allow} if allow else None,
    )
