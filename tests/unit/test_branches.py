"""Branch-name validation (omnigent.domain.branches)."""

import pytest

from omnigent.domain.branches import validate_branch_name
from omnigent.errors import InvalidBranch


@pytest.mark.parametrize(
    "name", ["feat/x", "fix-1", "a.b", "main", "a/b/c", "x@y", "user/feature_2", "é", "a" * 200]
)
def test_valid_names_are_returned(name):
    assert validate_branch_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        None,
        5,
        "a b",
        "a\tb",
        "a\x01b",
        "a\x7fb",
        "a..b",
        "..",
        "a@{b",
        "@{",
        "@",
        "a~b",
        "a^b",
        "a:b",
        "a?b",
        "a*b",
        "a[b",
        "a\\b",
        "-x",
        "x/",
        "/x",
        "a//b",
        "x.lock",
        "a/b.lock",
        "x.lock/y",
        "x.",
        ".x",
        "a/.b",
        "HEAD",
        "a" * 201,
    ],
)
def test_invalid_names_raise_invalid_branch(name):
    with pytest.raises(InvalidBranch) as ei:
        validate_branch_name(name)
    assert ei.value.code == "invalid_branch"
