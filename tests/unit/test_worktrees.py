"""Git worktrees on a real repository (omnigent.worktrees)."""

import os
import shutil
import subprocess

import pytest

from omnigent import worktrees
from omnigent.errors import InvalidBranch, InvalidWorkspace

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(cwd, *args):
    return subprocess.run(
        ["git", "-C", str(cwd), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "proj"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "README").write_text("hi\n")
    git(r, "add", "README")
    git(r, "commit", "-q", "-m", "init")
    return r


def branches(repo):
    return git(repo, "branch", "--list", "--format=%(refname:short)").splitlines()


def test_create_makes_worktree_on_new_branch(repo):
    tree = worktrees.create(str(repo), "feature-1", None)
    want = repo.parent / "proj-worktrees" / "feature-1"
    assert tree.path == str(want) and tree.created is True
    assert tree.branch == "feature-1" and tree.repo == str(repo)
    assert (want / "README").read_text() == "hi\n"
    assert "feature-1" in branches(repo)
    assert git(want, "rev-parse", "--abbrev-ref", "HEAD") == "feature-1"


def test_create_from_base_branch(repo):
    git(repo, "branch", "base1")
    tree = worktrees.create(str(repo), "from-base", "base1")
    assert git(tree.path, "rev-parse", "HEAD") == git(repo, "rev-parse", "base1")


def test_existing_branch_is_invalid_branch(repo):
    git(repo, "branch", "taken")
    with pytest.raises(InvalidBranch):
        worktrees.create(str(repo), "taken", None)
    assert not (repo.parent / "proj-worktrees").exists()


def test_unknown_base_is_invalid_branch(repo):
    with pytest.raises(InvalidBranch):
        worktrees.create(str(repo), "new-one", "no-such-base")
    assert "new-one" not in branches(repo)


def test_invalid_name_is_invalid_branch(repo):
    with pytest.raises(InvalidBranch):
        worktrees.create(str(repo), "bad..name", None)


def test_non_repo_workspace_is_invalid_workspace(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InvalidWorkspace) as ei:
        worktrees.create(str(plain), "x", None)
    assert ei.value.code == "invalid_workspace"
    with pytest.raises(InvalidWorkspace):
        worktrees.bind_existing(str(plain))


def test_rollback_removes_worktree_branch_and_empty_root(repo):
    tree = worktrees.create(str(repo), "tmp-branch", None)
    worktrees.rollback(tree)
    assert not os.path.exists(tree.path)
    assert "tmp-branch" not in branches(repo)
    assert not (repo.parent / "proj-worktrees").exists()
    assert repo.exists()
    worktrees.rollback(tree)  # safe to call twice


def test_rollback_of_nested_branch_removes_intermediate_dir(repo):
    tree = worktrees.create(str(repo), "feat/x", None)
    assert tree.path == str(repo.parent / "proj-worktrees" / "feat" / "x")
    assert "feat/x" in branches(repo)
    worktrees.rollback(tree)
    assert "feat/x" not in branches(repo)
    assert not (repo.parent / "proj-worktrees" / "feat").exists()
    assert not (repo.parent / "proj-worktrees").exists()


def test_rollback_keeps_root_shared_with_other_worktrees(repo):
    keep = worktrees.create(str(repo), "keep", None)
    gone = worktrees.create(str(repo), "gone", None)
    worktrees.rollback(gone)
    assert os.path.isdir(keep.path)
    assert branches(repo) == ["keep", "main"]


def test_bind_existing(repo):
    git(repo, "checkout", "-q", "-b", "work")
    tree = worktrees.bind_existing(str(repo))
    assert tree.created is False
    assert tree.branch == "work" and tree.path == str(repo) and tree.repo == str(repo)
    worktrees.rollback(tree)  # a bound worktree is never removed
    assert repo.exists() and "work" in branches(repo)


@pytest.mark.parametrize("existing, new", [("feat/x", "feat"), ("solo", "solo/y")])
def test_branch_clashing_with_existing_ref_is_invalid_branch(repo, existing, new):
    git(repo, "branch", existing)
    with pytest.raises(InvalidBranch):
        worktrees.create(str(repo), new, None)
