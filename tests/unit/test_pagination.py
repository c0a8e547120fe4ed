"""Keyset pagination (omnigent.domain.pagination)."""

from omnigent.domain.pagination import list_envelope, paginate_by_key
from omnigent.errors import InvalidRequest

ITEMS = [{"id": k} for k in ["c", "a", "e", "b", "d"]]  # deliberately unsorted


def ids(page):
    return [it["id"] for it in page.items]


def page(**kw):
    return paginate_by_key(ITEMS, key=lambda it: it["id"], **kw)


def test_ascending_first_page():
    p = page(limit=2)
    assert ids(p) == ["a", "b"]
    assert p.has_more is True


def test_descending_first_page():
    p = page(limit=2, descending=True)
    assert ids(p) == ["e", "d"]
    assert p.has_more is True


def test_after_ascending_is_strict():
    assert ids(page(limit=2, after="b")) == ["c", "d"]


def test_after_descending_is_strict():
    assert ids(page(limit=2, after="d", descending=True)) == ["c", "b"]


def test_before_ascending_gives_items_directly_preceding():
    p = page(limit=2, before="d")
    assert ids(p) == ["b", "c"]
    assert p.has_more is True  # "a" is further back


def test_before_descending_gives_items_directly_preceding():
    p = page(limit=2, before="b", descending=True)
    assert ids(p) == ["d", "c"]
    assert p.has_more is True  # "e" is further back


def test_cursor_of_deleted_item_still_works():
    # "bb" never existed (as if deleted): it is compared by value, not looked up.
    assert ids(page(limit=10, after="bb")) == ["c", "d", "e"]
    assert ids(page(limit=10, before="bb")) == ["a", "b"]
    assert ids(page(limit=10, after="bb", descending=True)) == ["b", "a"]


def test_has_more_false_at_the_end_after():
    p = page(limit=2, after="c")
    assert ids(p) == ["d", "e"]
    assert p.has_more is False


def test_has_more_false_at_the_start_before():
    p = page(limit=2, before="c")
    assert ids(p) == ["a", "b"]
    assert p.has_more is False


def test_has_more_descending_end():
    p = page(limit=3, after="c", descending=True)
    assert ids(p) == ["b", "a"]
    assert p.has_more is False


def test_cursor_past_the_end_gives_empty_page():
    p = page(limit=5, after="z")
    assert p.items == [] and p.has_more is False
    p = page(limit=5, before="a")
    assert p.items == [] and p.has_more is False


def test_limit_one_and_exact_fit():
    p = page(limit=1)
    assert ids(p) == ["a"] and p.has_more is True
    p = page(limit=5)
    assert ids(p) == ["a", "b", "c", "d", "e"] and p.has_more is False


def test_limit_max_on_large_list():
    many = [{"id": f"{i:05d}"} for i in range(1500)]
    p = paginate_by_key(many, key=lambda it: it["id"], limit=1000)
    assert len(p.items) == 1000
    assert p.items[-1]["id"] == "00999"
    assert p.has_more is True
    p2 = paginate_by_key(many, key=lambda it: it["id"], limit=1000, after=p.items[-1]["id"])
    assert len(p2.items) == 500 and p2.has_more is False


def test_limit_zero_never_returns_more_than_limit():
    try:
        p = page(limit=0, before="e")
    except InvalidRequest:
        return
    assert p.items == []


def test_after_and_before_together_give_the_items_between():
    # a schema-valid request is answered, not refused (CONTRACT.md: keyset cursors)
    between = page(limit=10, after="a", before="e")
    assert [it["id"] for it in between.items] == ["b", "c", "d"]
    assert page(limit=2, after="a", before="e").items[-1]["id"] == "d"


def test_list_envelope_with_data():
    env = list_envelope([{"id": "x"}, {"id": "y"}], True)
    assert env == {
        "object": "list",
        "data": [{"id": "x"}, {"id": "y"}],
        "first_id": "x",
        "last_id": "y",
        "has_more": True,
    }


def test_list_envelope_custom_id_field():
    env = list_envelope([{"path": "/a"}, {"path": "/b"}], False, id_field="path")
    assert (env["first_id"], env["last_id"], env["has_more"]) == ("/a", "/b", False)


def test_list_envelope_empty():
    assert list_envelope([], False) == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
