"""Globs (omnigent.env.globs) and file search (omnigent.env.search) on real files."""

import contextlib
import os

import pytest

from omnigent.env.globs import MAX_PATTERN_LENGTH, MAX_PATTERNS, GlobSet, split_globs
from omnigent.env.search import search
from omnigent.errors import InvalidRequest

# ---------------------------------------------------------------------------- globs


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, []),
        ("", []),
        ("   ", []),
        ("*.py", ["*.py"]),
        ("a,,b", ["a", "b"]),
        (" *.py , src/** ,", ["*.py", "src/**"]),
        (",", []),
    ],
)
def test_split_globs(value, expected):
    assert split_globs(value) == expected


GLOB_CASES = [
    # "*" stays within one segment
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/x/a.py", False),
    ("src/*", "src/x/a.py", False),
    # "?" is one character within a segment
    ("a?c", "abc", True),
    ("a?c", "ac", False),
    ("a?c", "abbc", False),
    ("a?c.py", "a/c.py", False),
    ("src/a?c", "src/a/c", False),
    # "**" is zero or more segments
    ("src/**", "src/a.py", True),
    ("src/**", "src/x/y/z.py", True),
    ("src/**", "srcx/a.py", False),
    ("src/**", "lib/src/a.py", False),
    ("**/node_modules", "node_modules", True),
    ("**/node_modules", "a/b/node_modules", True),
    ("**/node_modules", "a/node_modules_x", False),
    ("a/**/b.py", "a/b.py", True),
    ("a/**/b.py", "a/x/y/b.py", True),
    ("a/**/b.py", "a/x/y/c.py", False),
    ("a/**/b.py", "x/a/b.py", False),
    ("a/**/**/b.py", "a/b.py", True),
    ("**/x/**/*.md", "docs/x/deep/r.md", True),
    ("**/x/**/*.md", "x/r.md", True),
    ("**/x/**/*.md", "docs/y/r.md", False),
    ("**", "anything/at/all.txt", True),
    ("a**b", "aXYb", True),  # "**" inside a segment is "*"
    ("a**b", "a/b", False),
    # no "/": the base name at any depth
    ("*.ts", "x.ts", True),
    ("*.ts", "src/deep/x.ts", True),
    ("*.ts", "x.tsx", False),
    ("*.ts", "x.ts/y.js", False),
    ("node_modules", "node_modules", True),
    ("node_modules", "a/b/node_modules", True),
    ("node_modules", "a/node_modules/x.js", False),
    ("node_modules/", "a/node_modules", True),  # trailing "/" stripped
    # a "/" anchors at the root; a leading "./" or "/" only says so
    ("./build", "build", True),
    ("./build", "x/build", False),
    ("/build", "build", True),
    ("/build", "x/build", False),
    ("/src/*.py", "src/a.py", True),
    # case-sensitive
    ("*.PY", "a.py", False),
    ("README*", "readme.md", False),
    ("README*", "README.md", True),
    # character classes
    ("[abc].py", "b.py", True),
    ("[abc].py", "d.py", False),
    ("file[0-9].txt", "file7.txt", True),
    ("file[0-9].txt", "filex.txt", False),
    ("[!a]b", "xb", True),
    ("[!a]b", "ab", False),
    ("[^a]b", "ab", False),
    ("[]]x", "]x", True),
    ("a[b", "a[b", True),  # unclosed "[" is literal
    # regex metacharacters are literal
    ("a+b(1).py", "a+b(1).py", True),
    ("a.b", "axb", False),
    ("$x^", "$x^", True),
    ("back\\slash", "back\\slash", True),
    # unicode
    ("*.café", "x/menu.café", True),
    ("日本/*", "日本/語.txt", True),
]


@pytest.mark.parametrize("pattern, path, expected", GLOB_CASES)
def test_glob_semantics(pattern, path, expected):
    assert GlobSet([pattern]).match(path) is expected


def test_globset_any_of_several_patterns():
    g = GlobSet(split_globs("*.py, docs/**, ./Makefile"))
    assert [g.match(p) for p in ["a/b.py", "docs/x/y.md", "Makefile", "a/Makefile", "a.js"]] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_globset_bool():
    assert bool(GlobSet([])) is False
    assert bool(GlobSet(["", "  "])) is False
    assert bool(GlobSet(["/", "./"])) is False  # they name nothing
    assert bool(GlobSet(["*.py"])) is True
    assert bool(GlobSet(["src/**"])) is True
    assert GlobSet([]).match("a.py") is False


def test_globset_rejects_too_many_or_too_long_patterns():
    with pytest.raises(InvalidRequest) as exc:
        GlobSet([f"f{i}" for i in range(MAX_PATTERNS + 1)])
    assert exc.value.code == "invalid_glob"
    assert bool(GlobSet([f"f{i}" for i in range(MAX_PATTERNS)])) is True
    with pytest.raises(InvalidRequest) as exc:
        GlobSet(["a" * (MAX_PATTERN_LENGTH + 1)])
    assert exc.value.code == "invalid_glob"


def test_globset_rejects_bad_class_range():
    with pytest.raises(InvalidRequest) as exc:
        GlobSet(["[z-a].py"])
    assert exc.value.code == "invalid_glob"


def test_pathological_patterns_do_not_backtrack():
    import time

    deep = "/".join(["a"] * 200)
    star_heavy = GlobSet(["*a*a*a*a*a*a*a*a*a*a*a*a*b"])
    double_star_heavy = GlobSet(["**/a/**/a/**/a/**/a/**/a/**/a/**/a/**/b"])
    t = time.perf_counter()
    assert star_heavy.match("a" * 3000) is False
    assert double_star_heavy.match(deep) is False
    assert double_star_heavy.match(deep + "/b") is True
    assert time.perf_counter() - t < 0.5


# ---------------------------------------------------------------------------- search


def write(root, rel, content=b""):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    for rel in [
        "README.md",
        "setup.py",
        "src/main.py",
        "src/util.py",
        "src/app/Main.ts",
        "src/app/view.ts",
        "docs/main.md",
        "node_modules/lib/main.js",
        "pkg/node_modules/dep/index.js",
        ".git/HEAD",
        ".git/objects/main.py",
    ]:
        write(root, rel, b"x" * len(rel))
    return root


def s(root, q, **kw):
    return search(os.path.realpath(root), q, **kw)


def paths(result):
    return [e["path"] for e in result["data"]]


def test_entry_shape_and_envelope(tree):
    os.utime(tree / "src/util.py", (1_700_000_000, 1_700_000_000.7))
    r = s(tree, "util")
    assert r == {
        "object": "list",
        "data": [
            {
                "id": "src/util.py",
                "object": "session.environment.filesystem.entry",
                "name": "util.py",
                "path": "src/util.py",
                "type": "file",
                "bytes": len("src/util.py"),
                "modified_at": 1_700_000_000,
            }
        ],
        "first_id": "src/util.py",
        "last_id": "src/util.py",
        "has_more": False,
        "truncated": False,
    }


def test_no_match_is_an_empty_list(tree):
    r = s(tree, "nothing-like-this")
    assert r["data"] == [] and r["first_id"] is None and r["last_id"] is None
    assert r["has_more"] is False and r["truncated"] is False


def test_by_name_case_insensitive_sorted_and_git_never_entered(tree):
    assert paths(s(tree, "MAIN")) == [
        "docs/main.md",
        "node_modules/lib/main.js",
        "src/app/Main.ts",
        "src/main.py",
    ]


def test_by_path_substring(tree):
    assert paths(s(tree, "src/ma")) == ["src/main.py"]
    assert paths(s(tree, "app/")) == ["src/app/Main.ts", "src/app/view.ts"]
    assert paths(s(tree, "C/APP/V")) == ["src/app/view.ts"]


def test_directory_name_matches_its_files_not_itself(tree):
    # "src" is a directory: it is not reported, the files under it are.
    assert paths(s(tree, "src")) == [
        "src/app/Main.ts",
        "src/app/view.ts",
        "src/main.py",
        "src/util.py",
    ]
    assert paths(s(tree, "app")) == ["src/app/Main.ts", "src/app/view.ts"]


def test_include(tree):
    assert paths(s(tree, "p", include="*.py")) == ["setup.py", "src/main.py", "src/util.py"]
    assert paths(s(tree, "main", include="src/**")) == ["src/app/Main.ts", "src/main.py"]
    assert paths(s(tree, "main", include="*.md, *.js")) == [
        "docs/main.md",
        "node_modules/lib/main.js",
    ]


def test_exclude_files_and_directories(tree):
    assert paths(s(tree, "main", exclude="node_modules,*.md")) == [
        "src/app/Main.ts",
        "src/main.py",
    ]
    assert paths(s(tree, "index", exclude="node_modules")) == []  # at any depth
    assert paths(s(tree, "index", exclude="/node_modules")) == ["pkg/node_modules/dep/index.js"]
    assert paths(s(tree, "main", exclude="src/app")) == [
        "docs/main.md",
        "node_modules/lib/main.js",
        "src/main.py",
    ]


def test_exclude_prunes_the_subtree_without_spending_budget(tmp_path):
    root = tmp_path / "r"
    for i in range(50):
        write(root, f"node_modules/p{i}/index.js")
    write(root, "zz/index.js")
    # Root holds 2 entries, zz holds 1: 3 entries in all once node_modules is pruned.
    r = s(root, "index", exclude="node_modules", budget=3)
    assert paths(r) == ["zz/index.js"] and r["truncated"] is False
    r = s(root, "index", budget=3)
    assert r["truncated"] is True


def test_include_does_not_prune_directories(tree):
    # include filters files; "src/**" must still let the walk into src/app.
    assert paths(s(tree, ".ts", include="src/app/*")) == ["src/app/Main.ts", "src/app/view.ts"]


def test_git_is_never_entered_and_always_pruned_is_configurable(tree):
    assert paths(s(tree, "HEAD")) == []
    assert paths(s(tree, "objects")) == []
    assert paths(s(tree, "HEAD", always_pruned=frozenset())) == [".git/HEAD"]
    assert paths(s(tree, "main", always_pruned=frozenset({".git", "docs", "node_modules"}))) == [
        "src/app/Main.ts",
        "src/main.py",
    ]


def test_under_searches_a_subdirectory_with_paths_from_the_root(tree):
    assert paths(s(tree, "main", under="src")) == ["src/app/Main.ts", "src/main.py"]
    assert paths(s(tree, "main", under="src/app")) == ["src/app/Main.ts"]
    # q matches the path from the root, including the "under" part
    assert paths(s(tree, "src/app", under="src/app")) == ["src/app/Main.ts", "src/app/view.ts"]


def test_sorted_by_plain_path_order(tmp_path):
    root = tmp_path / "r"
    for rel in ["b/x.txt", "a-b/x.txt", "a/x.txt", "B/x.txt", "x.txt", "a/b/x.txt"]:
        write(root, rel)
    assert paths(s(root, "x.txt")) == sorted(
        ["b/x.txt", "a-b/x.txt", "a/x.txt", "B/x.txt", "x.txt", "a/b/x.txt"]
    )
    assert paths(s(root, "x.txt")) == [
        "B/x.txt",
        "a-b/x.txt",
        "a/b/x.txt",
        "a/x.txt",
        "b/x.txt",
        "x.txt",
    ]


def test_limit_and_has_more(tmp_path):
    root = tmp_path / "r"
    for i in range(7):
        write(root, f"d{i % 3}/f{i}.log")
    r = s(root, ".log", limit=3)
    assert paths(r) == ["d0/f0.log", "d0/f3.log", "d0/f6.log"]
    assert r["has_more"] is True
    assert r["first_id"] == "d0/f0.log" and r["last_id"] == "d0/f6.log"
    r = s(root, ".log", limit=7)
    assert len(r["data"]) == 7 and r["has_more"] is False
    with pytest.raises(InvalidRequest):
        s(root, ".log", limit=0)


def test_truncated_when_the_budget_runs_out(tmp_path):
    root = tmp_path / "r"
    for i in range(10):
        write(root, f"f{i}.txt")
    r = s(root, "f", budget=4)
    assert r["truncated"] is True
    assert len(r["data"]) == 4  # the 4 entries looked at, all matching
    assert all(p.startswith("f") and p.endswith(".txt") for p in paths(r))
    r = s(root, "f", budget=10)  # exactly enough
    assert r["truncated"] is False and len(r["data"]) == 10


def test_symlinked_directory_to_outside_is_not_followed(tmp_path):
    root = tmp_path / "r"
    write(root, "inside.txt")
    write(tmp_path, "outside/secret.txt")
    os.symlink(tmp_path / "outside", root / "out")
    os.symlink(root, root / "loop")  # a loop back to the root is not followed either
    assert paths(s(root, "txt")) == ["inside.txt"]
    assert paths(s(root, "out")) == []  # the symlink itself is not a file


def test_symlinked_directory_inside_root_is_not_followed(tmp_path):
    root = tmp_path / "r"
    write(root, "real/a.txt")
    os.symlink(root / "real", root / "alias")
    assert paths(s(root, "a.txt")) == ["real/a.txt"]


def test_symlinked_files(tmp_path):
    root = tmp_path / "r"
    write(root, "data/real.csv", b"1,2,3")
    write(tmp_path, "outside.csv", b"secret")
    os.symlink(root / "data/real.csv", root / "link-in.csv")
    os.symlink("data/real.csv", root / "rel-link.csv")  # relative target
    os.symlink(tmp_path / "outside.csv", root / "link-out.csv")
    os.symlink(root / "missing.csv", root / "dangling.csv")
    r = s(root, ".csv")
    assert paths(r) == ["data/real.csv", "link-in.csv", "rel-link.csv"]
    assert [e["bytes"] for e in r["data"]] == [5, 5, 5]  # the target's size


def test_unicode_names(tmp_path):
    root = tmp_path / "r"
    write(root, "日本/語.txt", b"abc")
    write(root, "Ärger/Übung.md")
    write(root, "café.py")
    assert paths(s(root, "語")) == ["日本/語.txt"]
    assert paths(s(root, "本/語")) == ["日本/語.txt"]
    assert paths(s(root, "übung")) == ["Ärger/Übung.md"]
    assert paths(s(root, "ärger/")) == ["Ärger/Übung.md"]
    r = s(root, "CAFÉ")
    assert paths(r) == ["café.py"] and r["data"][0]["name"] == "café.py"


@pytest.mark.parametrize("q", ["", " ", "\t\n"])
def test_blank_q_is_invalid(tree, q):
    with pytest.raises(InvalidRequest) as exc:
        s(tree, q)
    assert exc.value.code == "invalid_query"


def test_bad_glob_is_invalid(tree):
    with pytest.raises(InvalidRequest) as exc:
        s(tree, "main", include="[z-a]")
    assert exc.value.code == "invalid_glob"


def test_unreadable_directory_is_skipped(tree, monkeypatch):
    real_scandir = os.scandir
    blocked = os.path.realpath(tree / "src")

    def scandir(path):
        if os.fspath(path) == blocked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert paths(s(tree, "main")) == ["docs/main.md", "node_modules/lib/main.js"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_unreadable_directory_on_disk_is_skipped(tree):
    os.chmod(tree / "src", 0)
    try:
        assert paths(s(tree, "main")) == ["docs/main.md", "node_modules/lib/main.js"]
    finally:
        os.chmod(tree / "src", 0o755)


def test_file_vanishing_before_stat_is_skipped(tree, monkeypatch):
    real_scandir = os.scandir
    victim = tree / "src/main.py"

    @contextlib.contextmanager
    def scandir(path):
        with real_scandir(path) as it:
            entries = list(it)
        if victim.exists() and os.fspath(path) == os.path.realpath(tree / "src"):
            victim.unlink()  # listed, then gone before it is stat-ed
        yield iter(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    # src/main.py is found by the walk but is gone when the page is stat-ed: it is
    # neither on the page nor counted for has_more.
    r = s(tree, "main", limit=3)
    assert paths(r) == ["docs/main.md", "node_modules/lib/main.js", "src/app/Main.ts"]
    assert r["has_more"] is False


def test_only_files_are_reported(tmp_path):
    root = tmp_path / "r"
    (root / "report").mkdir(parents=True)
    write(root, "report/report.txt")
    os.mkfifo(root / "report.fifo")
    assert paths(s(root, "report")) == ["report/report.txt"]
