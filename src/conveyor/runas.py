"""Who an app's processes run as.

When Conveyor runs as root, instances, release-phase commands and one-off
commands run as an unprivileged user (`run_as:` in conveyor.yml, default
`conveyor`, a system user created on first use): the sealed release is then
really read-only to the app, and the app cannot read Conveyor's state, logs or
other services' data. A user that is not root runs everything as itself.

What the user must reach is prepared here: its data directory is its own
(mode 0700), each release directory is group-readable by it only, and the
release's `writable:` directories are its own. A directory on the way to
either that the user may not enter is an error that names it.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from conveyor.errors import TargetError
from conveyor.paths import make_dir, passable_mode

DEFAULT_USER = "conveyor"
_MAX_LINKS = 40  # as the kernel's limit of symlinks followed in one lookup


@dataclass(frozen=True)
class RunUser:
    """An unprivileged user the app's processes switch to."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, from /etc/group

    def popen_kwargs(self) -> dict[str, Any]:
        """`subprocess` arguments that start a child as this user."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def environment(self, home: Path) -> dict[str, str]:
        """USER, LOGNAME and HOME of the child (`home`: its data directory)."""
        return {"USER": self.name, "LOGNAME": self.name, "HOME": str(home)}


def run_user(setting: str | None) -> RunUser | None:
    """The user processes switch to, or None when they run as Conveyor itself.

    `setting` is the service's `run_as:`; unset means `conveyor` when Conveyor
    runs as root (created if missing) and no switch otherwise.
    """
    return _run_user(setting, os.geteuid())


@cache
def _run_user(setting: str | None, euid: int) -> RunUser | None:
    if setting is None:
        if euid != 0:
            return None
        return _lookup(DEFAULT_USER) or _create_system_user(DEFAULT_USER)
    entry = _lookup(setting)
    if entry is None:
        raise TargetError(
            f"run_as: user {setting!r} does not exist on this machine",
            hint=f"create it (`useradd --system --user-group {setting}`) or remove run_as: "
            f"to use {DEFAULT_USER!r}",
        )
    if entry.uid == euid:
        return None
    if euid != 0:
        raise TargetError(
            f"run_as: {setting!r} needs Conveyor to run as root (it runs as uid {euid})",
            hint="remove run_as: to run the app as yourself, or deploy as root",
        )
    return entry


def _lookup(name: str) -> RunUser | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = tuple(sorted({g.gr_gid for g in grp.getgrall() if name in g.gr_mem} - {entry.pw_gid}))
    return RunUser(name, entry.pw_uid, entry.pw_gid, groups)


def _create_system_user(name: str) -> RunUser:
    argv = [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "Conveyor apps",
        name,
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise TargetError(
            f"cannot create the system user {name!r} the app runs as: {exc.strerror or exc}",
            hint=f"create it (`useradd --system --user-group {name}`), or set run_as: "
            "to an existing user",
        ) from None
    created = _lookup(name)  # another Conveyor may have created it at the same time
    if created is None:
        raise TargetError(
            f"cannot create the system user {name!r} the app runs as: "
            f"{(done.stderr or done.stdout).strip() or f'useradd exited {done.returncode}'}",
            hint=f"create it (`useradd --system --user-group {name}`), or set run_as: "
            "to an existing user",
        )
    return created


# -- what the user needs to reach ---------------------------------------------------


def blocked_at(path: Path, user: RunUser) -> Path | None:
    """The first directory from / down to `path` that `user` may not enter, or None."""
    for directory in [*reversed(path.parents), path]:
        try:
            info = directory.stat()
        except FileNotFoundError:
            return None  # what does not exist yet is created for the user
        if not _may(info, user, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return directory
    return None


def _may(info: os.stat_result, user: RunUser, owner: int, group: int, other: int) -> bool:
    if info.st_uid == user.uid:
        return bool(info.st_mode & owner)
    if info.st_gid == user.gid or info.st_gid in user.groups:
        return bool(info.st_mode & group)
    return bool(info.st_mode & other)


def search_path_for(path: str, user: RunUser) -> str:
    """`path` (a PATH value) without the directories `user` may not enter (root's
    `~/.local/bin`, a version manager's shims): a command found there would fail with
    "permission denied" instead of being looked up further."""
    kept = [d for d in path.split(os.pathsep) if d and blocked_at(Path(d), user) is None]
    return os.pathsep.join(kept)


def require_reachable(path: Path, user: RunUser, what: str) -> None:
    """Raise a `TargetError` naming the directory that keeps `user` from `path`."""
    blocked = blocked_at(path, user)
    if blocked is None:
        return
    mode = stat.S_IMODE(blocked.stat().st_mode)
    raise TargetError(
        f"the app runs as user {user.name!r}, which may not enter {blocked} "
        f"(mode {mode:o}) on the way to its {what} {path}",
        hint=f"keep the Conveyor home and releases where {user.name!r} can pass (e.g. "
        f"`chmod o+x {blocked}`, or CONVEYOR_HOME=/srv/NAME), or set run_as: to a user "
        "that can",
    )


def require_runnable(program: Path, user: RunUser, what: str) -> None:
    """Raise a `TargetError` when `user` may not run `program`, following its symlinks
    hop by hop (a virtualenv's python points at the interpreter it was made with)."""
    hop = program
    for _ in range(_MAX_LINKS):
        blocked = blocked_at(hop.parent, user)
        if blocked is not None:
            mode = stat.S_IMODE(blocked.stat().st_mode)
            shown = f"{program} ({hop})" if hop != program else str(program)
            raise TargetError(
                f"the app runs as user {user.name!r}, which may not run {what} {shown}: "
                f"it may not enter {blocked} (mode {mode:o})",
                hint="build the release with programs every user may run (e.g. a "
                f"virtualenv made with /usr/bin/python3, not one under {blocked}), or set "
                "run_as: to a user that can",
            )
        if not hop.is_symlink():
            return
        hop = Path(os.path.normpath(hop.parent / hop.readlink()))


def require_writable_sqlite(database: Path, user: RunUser) -> None:
    """Raise a `TargetError` unless `user` may write the SQLite file `database` and
    create files beside it (SQLite's journal), or create it when it does not exist."""
    require_reachable(database.parent, user, "database's directory")
    problems = [
        path
        for path in (database.parent, database)
        if path.exists() and not _may(path.stat(), user, stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH)
    ]
    if not problems:
        return
    shown = ", ".join(
        f"{path} (owner {_owner(path)}, mode {stat.S_IMODE(path.stat().st_mode):o})"
        for path in problems
    )
    raise TargetError(
        f"the app runs as user {user.name!r}, which may not write the SQLite database "
        f"{database}: {shown} (SQLite also writes a journal beside the file)",
        hint=f"give them to it (`chown {user.name}: {' '.join(map(str, problems))}`), keep "
        "the database in $DATA_DIR, or set run_as: to a user that can",
    )


def _owner(path: Path) -> str:
    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def own_data_dir(data_dir: Path, user: RunUser | None) -> None:
    """The service's data directory, created 0700 and (all of it) owned by `user`."""
    make_dir(data_dir.parent, passable_mode())
    data_dir.mkdir(mode=0o700, exist_ok=True)
    if user is None:
        return
    info = data_dir.stat()
    if info.st_uid != user.uid:  # new, or data from before the switch: hand it over
        _chown_tree(data_dir, user.uid, user.gid)
    if stat.S_IMODE(info.st_mode) & 0o077:
        data_dir.chmod(0o700)


def open_release(release_dir: Path, writable: Iterable[str], user: RunUser | None) -> None:
    """Let `user` (and nobody else) read a sealed release and write its `writable` dirs.

    The release's files are readable by all (see `seal`); its top directory lets in
    only its owner and, when the app runs as another user, that user's group.
    """
    info = release_dir.stat()
    if user is None:
        if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.geteuid():
            release_dir.chmod(stat.S_IMODE(info.st_mode) & 0o700)
        return
    if info.st_gid != user.gid:
        os.chown(release_dir, -1, user.gid)
    wanted = (stat.S_IMODE(info.st_mode) & 0o700) | 0o050
    if stat.S_IMODE(release_dir.stat().st_mode) != wanted:
        release_dir.chmod(wanted)
    for relative in writable:
        directory = release_dir / relative
        if directory.is_dir() and directory.stat().st_uid != user.uid:
            _chown_tree(directory, user.uid, user.gid)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)  # noqa: PTH118
