"""Ids (omnigent.ids)."""

import re
from itertools import pairwise

from omnigent.ids import new_id, new_token


def test_prefix_and_url_safe():
    for prefix in ["host", "conv", "runner", "file"]:
        i = new_id(prefix)
        assert i.startswith(prefix + "_")
        assert re.fullmatch(r"[A-Za-z0-9_-]+", i), i


def test_strictly_increasing_in_sequence():
    made = [new_id("conv") for _ in range(2000)]
    assert len(set(made)) == len(made)
    assert all(a < b for a, b in pairwise(made))


def test_tokens_are_unique_and_url_safe():
    a, b = new_token(), new_token()
    assert a != b
    assert re.fullmatch(r"omg_[A-Za-z0-9_-]{40,}", a), a
