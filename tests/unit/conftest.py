"""Fixtures several unit test modules share."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def root(tmp_path):
    """An environment root: a real directory (its real path, as the runner resolves it)."""
    r = os.path.realpath(tmp_path / "ws")
    os.mkdir(r)
    return r
