"""Git worktrees for runner launches (runs on the host's node).

A new worktree lives beside the repository, at `<repo-parent>/<repo>-worktrees/<branch>`,
on a new branch. `rollback` undoes `create` completely (worktree and branch).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from omnigent.domain.branches import validate_branch_name
from omnigent.errors import HostIOError, InvalidBranch, InvalidWorkspace


@dataclass(frozen=True)
class Worktree:
    path: str
    branch: str
    repo: str
    created: bool  # False when an existing worktree was bound as it is


def _git(cwd: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "-C", cwd, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )


def _toplevel(workspace: str) -> str:
    out = _git(workspace, "rev-parse", "--show-toplevel")
    if out.returncode != 0:
        raise InvalidWorkspace(f"workspace is not a git repository: {workspace}")
    return out.stdout.strip()


def bind_existing(workspace: str) -> Worktree:
    top = _toplevel(workspace)
    head = _git(workspace, "rev-parse", "--abbrev-ref", "HEAD")
    return Worktree(path=workspace, branch=head.stdout.strip(), repo=top, created=False)


def create(workspace: str, branch: str, base: str | None) -> Worktree:
    validate_branch_name(branch)
    repo = _toplevel(workspace)
    if _git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}").returncode == 0:
        raise InvalidBranch(f"branch already exists: {branch}")
    existing = _git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").stdout.split()
    for other in existing:  # 'feat' and 'feat/x' cannot both exist (a file and a folder)
        if other.startswith(branch + "/") or branch.startswith(other + "/"):
            raise InvalidBranch(f"branch {branch!r} clashes with the existing branch {other!r}")
    if _git(repo, "check-ref-format", "--branch", branch).returncode != 0:
        raise InvalidBranch(f"git refuses the branch name {branch!r}")
    start = base or "HEAD"
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{start}^{{commit}}").returncode != 0:
        raise InvalidBranch(f"unknown base branch: {start}")
    parent, name = os.path.split(repo.rstrip("/"))
    path = os.path.join(parent, f"{name}-worktrees", branch)
    if os.path.exists(path):
        raise InvalidWorkspace(f"worktree path already exists: {path}")
    out = _git(repo, "worktree", "add", "-b", branch, path, start)
    if out.returncode != 0:
        raise HostIOError(f"git worktree add failed: {out.stderr.strip()}")
    return Worktree(path=path, branch=branch, repo=repo, created=True)


def rollback(tree: Worktree) -> None:
    """Remove a worktree this module created, and its branch. Safe to call twice."""
    if not tree.created:
        return
    _git(tree.repo, "worktree", "remove", "--force", tree.path)
    _git(tree.repo, "worktree", "prune")
    _git(tree.repo, "branch", "-D", tree.branch)
    # Remove directories left empty (the `<repo>-worktrees` root, `feat/` of `feat/x`).
    stop = os.path.dirname(tree.repo.rstrip("/"))
    parent = os.path.dirname(tree.path)
    while parent != stop and parent.startswith(stop):
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)
