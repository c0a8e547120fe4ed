"""Keyset pagination: cursors are keys, "strictly after/before this key in sort order".

A cursor keeps working when the item it names was deleted meanwhile, because it is
compared by value, never looked up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from omnigent.errors import InvalidRequest

T = TypeVar("T")

LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 1000, 20


def check_limit(limit: int) -> None:
    if not LIMIT_MIN <= limit <= LIMIT_MAX:
        raise InvalidRequest(f"limit must be between {LIMIT_MIN} and {LIMIT_MAX}")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


def paginate_by_key(
    items: Iterable[T],
    key: Callable[[T], str],
    *,
    limit: int = LIMIT_DEFAULT,
    after: str | None = None,
    before: str | None = None,
    descending: bool = False,
) -> Page[T]:
    """One page of `items` ordered by `key` (ascending unless `descending`); with both
    cursors, of the items strictly between them.

    `after` gives the `limit` items that follow the cursor; `before` the `limit` items
    that directly precede it. `has_more` says whether items exist beyond the page in
    the direction of travel.
    """
    check_limit(limit)
    ordered: Sequence[T] = sorted(items, key=key, reverse=descending)

    def comes_after(k: str, cursor: str) -> bool:
        return k < cursor if descending else k > cursor

    if after is not None:
        ordered = [it for it in ordered if comes_after(key(it), after)]
    if before is not None:  # with `after` too: the items strictly between the two
        preceding = [it for it in ordered if comes_after(before, key(it))]
        return Page(preceding[-limit:], len(preceding) > limit)
    return Page(list(ordered[:limit]), len(ordered) > limit)


def page_of_keys(
    keys: list[str],
    build: Callable[[str], dict | None],
    *,
    limit: int,
    after: str | None = None,
    before: str | None = None,
    descending: bool = False,
) -> Page[dict]:
    """One page over `keys` (already sorted in the page's order), building only the items
    on the page and one more (for has_more); a key whose `build` gives None (say, a file
    removed meanwhile) is skipped and the next one taken."""

    def beyond(key: str, cursor: str) -> bool:  # strictly after `cursor` in this order
        return key < cursor if descending else key > cursor

    if after is not None:
        keys = [k for k in keys if beyond(k, after)]
    if before is not None:  # with `after` too: the keys strictly between the two
        keys = [k for k in keys if beyond(before, k)][::-1]
    items: list[dict] = []
    for key in keys:
        item = build(key)
        if item is not None:
            items.append(item)
            if len(items) > limit:
                break
    has_more = len(items) > limit
    items = items[:limit]
    if before is not None:
        items.reverse()
    return Page(items, has_more)


def list_envelope(data: list[dict], has_more: bool, id_field: str = "id") -> dict:
    """The contract's list envelope."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0][id_field] if data else None,
        "last_id": data[-1][id_field] if data else None,
        "has_more": has_more,
    }
