"""What Conveyor asks git: the commit checked out, whether the tree is dirty, a commit's
files, the branches that contain a commit. Plain `git` commands (argv lists)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from conveyor.tarball import extract


@dataclass(frozen=True)
class GitInfo:
    """The repository around a directory and its checked-out commit."""

    toplevel: Path
    commit: str
    commit_time: datetime


def git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)


def git_info(root: Path) -> GitInfo | None:
    """The repository `root` is in and its HEAD; None outside git or before a commit."""
    if shutil.which("git") is None:
        return None
    top = git(["rev-parse", "--show-toplevel"], root)
    if top.returncode != 0:
        return None
    head = git(["log", "-1", "--format=%H %ct"], root)
    if head.returncode != 0 or not head.stdout.strip():
        return None  # a repository without commits: treat as a plain directory
    commit, epoch = head.stdout.decode().split()
    return GitInfo(
        Path(top.stdout.decode().strip()), commit, datetime.fromtimestamp(int(epoch), UTC)
    )


def is_dirty(root: Path) -> bool:
    """Whether the tracked or untracked-but-not-ignored files differ from HEAD."""
    status = git(["status", "--porcelain", "--untracked-files=normal"], root)
    return status.returncode != 0 or bool(status.stdout.strip())


def export_commit(toplevel: Path, commit: str, destination: Path) -> None:
    """Write the files of `commit` (the whole repository) into `destination`."""
    archive = git(["archive", "--format=tar", commit], toplevel)
    if archive.returncode != 0:
        raise ValueError(archive.stderr.decode().strip() or f"git archive {commit} failed")
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        extract(tar, destination, tar.getmembers())


def branches_containing(root: Path, commit: str) -> list[str]:
    """The branches whose history has `commit`: local ones, and remote-tracking ones
    without their remote (`refs/remotes/origin/main` is `main`)."""
    listed = git(["branch", "--all", "--contains", commit, "--format=%(refname)"], root)
    if listed.returncode != 0:
        return []
    names = set()
    for ref in listed.stdout.decode().split():
        if ref.startswith("refs/heads/"):
            names.add(ref.removeprefix("refs/heads/"))
        elif ref.startswith("refs/remotes/"):
            remote_branch = ref.removeprefix("refs/remotes/").split("/", 1)
            if len(remote_branch) == 2 and remote_branch[1] != "HEAD":
                names.add(remote_branch[1])
    return sorted(names)


def commits_between(root: Path, old: str | None, new: str) -> list[tuple[str, datetime]] | None:
    """The commits `new` has that `old` has not (`old..new`), with their committer times,
    newest first; just `new` when `old` is None. None when git cannot say (no git, not a
    repository, a commit unknown here such as one from a shallow clone)."""
    if shutil.which("git") is None:
        return None
    spec = [new] if old is None else [f"{old}..{new}"]
    done = git(["log", "--format=%H %ct", *(["-1"] if old is None else []), *spec, "--"], root)
    if done.returncode != 0:
        return None
    found = []
    for line in done.stdout.decode().splitlines():
        commit, epoch = line.split()
        found.append((commit, datetime.fromtimestamp(int(epoch), UTC)))
    return found
