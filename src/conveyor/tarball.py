"""Unpack a tar archive without letting it write outside its destination.

Python 3.11.4+ has tarfile's "data" filter for this; Debian 12's python3 is 3.11.2,
where the same rules are checked here before extracting.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Sequence
from pathlib import Path

from conveyor.errors import BuildError


def extract(tar: tarfile.TarFile, destination: Path, members: Sequence[tarfile.TarInfo]) -> None:
    """Extract `members` of `tar` into `destination`, refusing unsafe ones."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(destination, members=members, filter="data")
        return
    for member in members:
        problem = unsafe(member)
        if problem is not None:
            raise BuildError(
                f"the archive has an unsafe entry {member.name!r}: {problem}",
                hint="remove it from the repository",
            )
    tar.extractall(destination, members=members)  # noqa: S202 (checked above)


def unsafe(member: tarfile.TarInfo) -> str | None:
    """Why extracting `member` could write outside the destination, or None.

    >>> unsafe(tarfile.TarInfo("../etc/passwd"))
    'it leaves the destination'
    """
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "not a file, directory or link"
    if _escapes(member.name):
        return "it leaves the destination"
    if member.issym() and _escapes(posixpath.join(posixpath.dirname(member.name), member.linkname)):
        return f"its link target {member.linkname!r} leaves the destination"
    if member.islnk() and _escapes(member.linkname):
        return f"its link target {member.linkname!r} leaves the destination"
    return None


def _escapes(path: str) -> bool:
    if posixpath.isabs(path):
        return True
    return posixpath.normpath(path).split("/")[0] == ".."
