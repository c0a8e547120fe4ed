"""Git branch-name validation (the rules of `git check-ref-format --branch`)."""

from __future__ import annotations

import re

from omnigent.errors import InvalidBranch

_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def validate_branch_name(name: object) -> str:
    """Return `name` if git would accept it as a new branch name, else raise InvalidBranch."""
    if not isinstance(name, str) or not name:
        raise InvalidBranch("branch_name must be a non-empty string")
    problems = []
    if len(name) > 200:
        problems.append("is longer than 200 characters")
    if _FORBIDDEN.search(name):
        problems.append("contains a space, control character or one of ~^:?*[\\")
    if name.startswith("-"):
        problems.append("starts with '-'")
    if name.startswith("/") or name.endswith("/") or "//" in name:
        problems.append("has an empty path component")
    if name.endswith(".") or name.endswith(".lock") or ".lock/" in name:
        problems.append("ends with '.' or '.lock'")
    if ".." in name or "@{" in name or name == "@":
        problems.append("contains '..' or '@{' or is '@'")
    if any(part.startswith(".") for part in name.split("/")):
        problems.append("has a component starting with '.'")
    if name == "HEAD":
        problems.append("is 'HEAD'")
    if problems:
        raise InvalidBranch(f"invalid branch name {name!r}: it " + "; it ".join(problems))
    return name
