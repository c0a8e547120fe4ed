"""omnigent/control is plain Python: it imports neither Ray nor the actors (imports run
actors → omnigent.control → omnigent.store / omnigent.domain)."""

from __future__ import annotations

import ast
from pathlib import Path

import omnigent.control

PACKAGE = Path(omnigent.control.__file__).parent


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_ray_and_no_actors_in_omnigent_control():
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 7
    for path in modules:
        for name in imported(path):
            top = name.split(".")[0]
            assert top not in ("ray", "actors"), f"{path.name} imports {name}"


def test_each_module_is_small():
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 300, path.name
