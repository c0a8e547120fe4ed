"""Every test is marked by the directory it is in: tests/unit -> `unit`, tests/cluster ->
`cluster`, tests/e2e -> `e2e`, tests/browser -> `browser` (so `pytest -m cluster`,
`-m "not e2e"`… select by kind).
Done here, by path, so that a new test file cannot be left unmarked; a `pytestmark` in a
conftest.py would mark nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# each registered in pyproject.toml's markers
BY_DIRECTORY = ("unit", "cluster", "e2e", "browser")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = Path(item.path).resolve().relative_to(TESTS).parts[0]
        except ValueError:
            continue  # collected from outside tests/
        if top in BY_DIRECTORY:
            item.add_marker(top)
