"""Glob patterns for `include` / `exclude` filters (pure, no I/O).

A filter value is a comma-separated list of globs, matched against POSIX paths relative
to the environment root ("src/a/b.py", never a leading "/"). Matching is case-sensitive.

    *       any run of characters within one path segment (never "/")
    ?       one character within a segment
    [abc]   one of the characters; ranges ("[a-z]") and negation ("[!a]", "[^a]")
    **      as a whole segment: zero or more segments ("src/**" matches "src/a.py" and
            "src/x/y/z.py"; "**/node_modules" matches "node_modules" and "a/node_modules";
            "a/**/b.py" matches "a/b.py" and "a/x/y/b.py"). Elsewhere it is "*".

A glob without "/" matches the base name at any depth ("*.ts" matches "x.ts" and
"src/deep/x.ts"). A glob with a "/" is anchored at the root; a leading "./" or "/" only
says so and is stripped. A trailing "/" ("node_modules/") means "a directory" and is
stripped too (filters prune directories by name, so the meaning is kept). A "[" with no
closing "]" in its segment is a literal "["; backslash is an ordinary character.

All patterns compile once into (at most) two regular expressions, one matched against the
base name and one against the path. Every "*" and "**" is compiled so that the regex
engine cannot backtrack catastrophically (atomic groups, leftmost-first), however the
pattern is written.
"""

from __future__ import annotations

import re

from omnigent.errors import InvalidGlob, InvalidRequest

MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 1000

_SEG_ANY = "[^/]*"


def split_globs(value: str | None) -> list[str]:
    """The globs in a comma-separated filter value; blank items are dropped."""
    if not value:
        return []
    return [item for item in (part.strip() for part in value.split(",")) if item]


def _invalid(message: str) -> InvalidRequest:
    return InvalidGlob(message)


def _char_class(seg: str, i: int) -> tuple[str | None, int]:
    """The regex for the class opening at seg[i] == "[", and the index after it."""
    n = len(seg)
    j = i + 1
    if j < n and seg[j] in "!^":
        j += 1
    if j < n and seg[j] == "]":  # a "]" first in the class is a member
        j += 1
    end = seg.find("]", j)
    if end < 0:
        return None, i
    body = seg[i + 1 : end]
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    members = "".join(c if c == "-" else re.escape(c) for c in body)
    return ("[^/" + members + "]" if negate else "[" + members + "]"), end + 1


def _segment(seg: str) -> str:
    """The regex for one segment of a glob (no "/" in it, not "**")."""
    pieces: list[str] = []  # fixed-length pieces between runs of "*"
    cur: list[str] = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            pieces.append("".join(cur))
            cur = []
            while i < n and seg[i] == "*":
                i += 1
            continue
        if c == "?":
            cur.append("[^/]")
        elif c == "[":
            cls, after = _char_class(seg, i)
            if cls is not None:
                cur.append(cls)
                i = after
                continue
            cur.append(r"\[")
        else:
            cur.append(re.escape(c))
        i += 1
    pieces.append("".join(cur))
    if len(pieces) == 1:
        return pieces[0]
    # P0*P1*...*Pn: each middle piece is taken at its leftmost occurrence (atomic), which
    # is always right for fixed-length pieces and keeps matching linear.
    out = pieces[0]
    for piece in pieces[1:-1]:
        out += "(?>" + _SEG_ANY + "?" + piece + ")"
    return out + _SEG_ANY + pieces[-1]


def _compile_one(pattern: str) -> tuple[str, str] | None:
    """("name" | "path", regex) for one glob, or None when it names nothing."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise _invalid(f"glob longer than {MAX_PATTERN_LENGTH} characters")
    if "\x00" in pattern:
        raise _invalid("glob must not contain NUL")
    p = pattern.strip().rstrip("/")
    anchored = "/" in p
    while p.startswith(("./", "/")):
        p = p[2:] if p.startswith("./") else p[1:]
    segs: list[str] = []
    for s in p.split("/"):
        if s in ("", "."):
            continue
        if s == "**" and segs and segs[-1] == "**":
            continue
        segs.append(s)
    if not segs:
        return None
    if not anchored:  # one segment: the base name at any depth
        return "name", (_SEG_ANY if segs[0] == "**" else _segment(segs[0]))
    # Path regexes match relpath + "/", so that every segment is followed by "/" and
    # "**" is simply "(?:[^/]*/)*".
    groups: list[list[str]] = [[]]
    for s in segs:
        if s == "**":
            groups.append([])
        else:
            groups[-1].append(_segment(s) + "/")
    rx = "".join(groups[0])
    if len(groups) > 1:
        for g in groups[1:-1]:  # between two "**": leftmost occurrence, atomic
            rx += "(?>(?:[^/]*/)*?" + "".join(g) + ")"
        rx += "(?:[^/]*/)*" + "".join(groups[-1])
    return "path", rx


def _join(regexes: list[str]):
    if not regexes:
        return None
    return re.compile("|".join("(?:" + r + ")" for r in regexes), re.DOTALL).fullmatch


class GlobSet:
    """A set of globs; `match` is true when any of them matches."""

    def __init__(self, patterns: list[str]) -> None:
        patterns = [p for p in patterns if p and p.strip()]
        if len(patterns) > MAX_PATTERNS:
            raise _invalid(f"too many globs (at most {MAX_PATTERNS})")
        self.patterns = patterns
        names: list[str] = []
        paths: list[str] = []
        for pattern in patterns:
            compiled = _compile_one(pattern)
            if compiled is None:
                continue
            kind, rx = compiled
            try:
                re.compile(rx)
            except re.error:
                raise _invalid(f"invalid glob: {pattern!r}") from None
            (names if kind == "name" else paths).append(rx)
        self._name = _join(names)
        self._path = _join(paths)

    def __bool__(self) -> bool:
        return self._name is not None or self._path is not None

    def __repr__(self) -> str:
        return f"GlobSet({self.patterns!r})"

    def match(self, relpath: str) -> bool:
        """Whether `relpath` ("src/a/b.py", relative to the root) matches any glob."""
        if self._name is not None and self._name(relpath[relpath.rfind("/") + 1 :]):
            return True
        return self._path is not None and self._path(relpath + "/") is not None
