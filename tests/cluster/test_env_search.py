"""Search: files whose relative path contains `q` (case-insensitive), include/exclude
globs, files only, sorted by path, limits (one shared session on node A)."""

from __future__ import annotations

import os

import pytest

from tests.cluster.helpers import env_url, launched, make_workspace

FILES = [
    "README.md",
    "src/main.py",
    "src/Main_Helper.rb",
    "src/util/strings.py",
    "src/util/strings_test.py",
    "src/util/deep/er/main.go",
    "docs/guide.md",
    "docs/MAINTAINERS",
    "maindir/x.txt",
    "node_modules/pkg/main.js",
    "node_modules/pkg/index.js",
    "build/main.o",
    ".hidden/main.cfg",
    ".git/HEAD",
    ".git/refs/heads/main",
    ".git/main.pack",
]


@pytest.fixture(scope="module")
def search(world):
    ws = make_workspace(world.node_a.home, {f: f"{f}\n" for f in FILES})
    os.makedirs(os.path.join(ws, "emptymain/sub"))  # directories are never results
    sid = launched(world.alice, world.host_a, ws)

    def run(q, status=200, path="", **params):
        url = env_url(sid, "/search" + (f"/{path}" if path else ""))
        r = world.alice.get(url, params={"q": q, **params} if q is not None else params)
        assert r.status_code == status, (q, params, r.text)
        return r.json()

    yield run
    world.alice.delete(f"/v1/sessions/{sid}")


def _paths(body) -> list[str]:
    return [e["path"] for e in body["data"]]


MAIN = sorted(
    [
        "src/main.py",
        "src/Main_Helper.rb",
        "src/util/deep/er/main.go",
        "docs/MAINTAINERS",
        "maindir/x.txt",
        "node_modules/pkg/main.js",
        "build/main.o",
        ".hidden/main.cfg",
    ]
)


def test_name_substring_case_insensitive_sorted_files_only(search):
    body = search("main")
    assert body["object"] == "list" and body["has_more"] is False
    assert body.get("truncated") is False
    assert _paths(body) == MAIN  # sorted by path; no directory; nothing from .git
    e = body["data"][_paths(body).index("src/main.py")]
    assert e["name"] == "main.py" and e["type"] == "file" and e["id"] == "src/main.py"
    assert e["bytes"] == len("src/main.py\n")
    assert _paths(search("MAIN")) == MAIN
    assert _paths(search("mAiN")) == MAIN
    assert _paths(search("Strings")) == ["src/util/strings.py", "src/util/strings_test.py"]


def test_path_substring(search):
    assert _paths(search("util/str")) == ["src/util/strings.py", "src/util/strings_test.py"]
    assert _paths(search("DEEP/ER/")) == ["src/util/deep/er/main.go"]
    assert _paths(search("pkg/index")) == ["node_modules/pkg/index.js"]
    assert _paths(search(".md")) == ["README.md", "docs/guide.md"]
    assert _paths(search("nothing-like-this")) == []


def test_git_contents_are_never_returned(search):
    for q in ("HEAD", "refs", ".git", "pack"):
        assert not [p for p in _paths(search(q)) if p.startswith(".git/")], q


def test_include_globs(search):
    # a glob without "/" matches the base name at any depth
    assert _paths(search("main.", include="*.py")) == ["src/main.py"]
    assert _paths(search("s", include="*.py")) == [
        "src/main.py",
        "src/util/strings.py",
        "src/util/strings_test.py",
    ]
    assert _paths(search("main", include="main.*")) == [
        ".hidden/main.cfg",
        "build/main.o",
        "node_modules/pkg/main.js",
        "src/main.py",
        "src/util/deep/er/main.go",
    ]
    # `*` is one segment, `**` any depth
    assert _paths(search("main", include="src/*")) == ["src/Main_Helper.rb", "src/main.py"]
    assert _paths(search("main", include="src/**")) == [
        "src/Main_Helper.rb",
        "src/main.py",
        "src/util/deep/er/main.go",
    ]
    assert _paths(search("main", include="**/*.go")) == ["src/util/deep/er/main.go"]
    # a leading "/" anchors a glob at the root
    assert _paths(search("main", include="/src/*")) == ["src/Main_Helper.rb", "src/main.py"]
    assert _paths(search("x", include="/maindir/**")) == ["maindir/x.txt"]
    # several, comma separated
    assert _paths(search("main", include="*.go, *.js")) == [
        "node_modules/pkg/main.js",
        "src/util/deep/er/main.go",
    ]


def test_exclude_globs(search):
    # a directory name: pruned at any depth
    got = _paths(search("main", exclude="node_modules,build"))
    assert got == [p for p in MAIN if not p.startswith(("node_modules/", "build/"))]
    assert _paths(search("main", exclude="**/node_modules")) == [
        p for p in MAIN if not p.startswith("node_modules/")
    ]
    # an anchored directory path prunes that directory only
    assert _paths(search("s", exclude="src/util", include="*.py")) == ["src/main.py"]
    assert _paths(search("str", exclude="src/util/**")) == []
    # base-name globs drop files anywhere
    assert _paths(search("strings", exclude="*_test.py")) == ["src/util/strings.py"]
    assert _paths(search("main", exclude="*.*")) == ["docs/MAINTAINERS"]
    # exclude wins over include
    assert _paths(search("main", include="*.py", exclude="src/**")) == []


def test_search_under_a_directory(search):
    body = search("string", path="src/util")
    assert _paths(body) == ["src/util/strings.py", "src/util/strings_test.py"]
    assert _paths(search("main", path="src")) == [
        "src/Main_Helper.rb",
        "src/main.py",
        "src/util/deep/er/main.go",
    ]
    body = search("x", status=404, path="nope")
    assert body["error"]["code"]


def test_limit_and_has_more(search):
    body = search("main", limit=3)
    assert _paths(body) == MAIN[:3] and body["has_more"] is True
    body = search("main", limit=len(MAIN))
    assert _paths(body) == MAIN and body["has_more"] is False
    body = search("main", limit=500)
    assert _paths(body) == MAIN and body["has_more"] is False


@pytest.mark.parametrize(
    "params",
    [
        {"q": ""},
        {"q": "   "},
        {"q": "\t"},
        {},
        {"q": "main", "limit": 0},
        {"q": "main", "limit": 501},
        {"q": "main", "limit": "x"},
    ],
)
def test_bad_search_parameters_are_422(search, params):
    q = params.pop("q", None)
    body = search(q, status=422, **params)
    assert body["error"]["code"] and body["error"]["message"], body
