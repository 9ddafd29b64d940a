"""Scripts that run wherever their release is: on this machine or shipped to a host.

pip writes each console script of a virtualenv (`.venv/bin/gunicorn`) with the
absolute path of the venv's python in its `#!` line, which names the release
directory of the machine that built it. A release shipped to a host lives in
another directory (`~/.conveyor/<project>/releases/...`), where that line names
nothing. Before a release is sealed, every script in a `bin/` directory whose
`#!` line names an interpreter inside the release gets the line pip itself
writes for relocatable scripts instead: a shell preamble that runs the
interpreter found next to the script, which Python reads as a string.

The interpreter itself (`.venv/bin/python`, a link to the python that made the
venv) stays as it is: a host needs that python at the same path (Debian's
`/usr/bin/python3` is the same on every Debian host).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

_LIMIT = 1 << 20  # a script is small; a large file in bin/ is a binary
# What pip writes instead of `#!PATH` when PATH is too long for a `#!` line.
# pip quotes PATH or not, by version.
_TRAMPOLINE = re.compile(rb"#!/bin/sh\n'''exec' (?:\"([^\"]+)\"|(\S+)) \"\$0\" \"\$@\"\n' '''\n")
# The same, running the interpreter found next to the script.
_PREAMBLE = "#!/bin/sh\n'''exec' \"$(dirname -- \"$0\")\"/{interpreter} \"$0\" \"$@\"\n' '''\n"


def relocatable_scripts(release: Path) -> list[str]:
    """Rewrite, in place, the scripts under `release` whose `#!` line names an interpreter
    inside it; returns their paths relative to `release`. A script that is a hard link
    (shared with an earlier release) is replaced, never written through."""
    root = str(release)
    changed: list[str] = []
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        if os.path.basename(directory) != "bin":  # noqa: PTH119
            continue
        for name in sorted(files):
            path = os.path.join(directory, name)  # noqa: PTH118
            if os.path.islink(path) or os.path.getsize(path) > _LIMIT:  # noqa: PTH114, PTH202
                continue
            if _rewrite(path, root):
                changed.append(os.path.relpath(path, root))
    return changed


def _rewrite(path: str, root: str) -> bool:
    with open(path, "rb") as handle:  # noqa: PTH123
        script = handle.read()
    interpreter, rest = _interpreter(script, root.encode())
    if interpreter is None:
        return False
    relative = os.path.relpath(interpreter, os.path.dirname(path))  # noqa: PTH120
    if relative.startswith(".."):  # the interpreter is not in or below the script's bin/
        return False
    preamble = _PREAMBLE.format(interpreter=shlex.quote(relative)).encode()
    mode = os.stat(path).st_mode & 0o7777  # noqa: PTH116
    incoming = path + ".relocating"
    with open(incoming, "wb") as handle:  # noqa: PTH123
        handle.write(preamble + rest)
    os.chmod(incoming, mode)  # noqa: PTH101
    os.replace(incoming, path)  # noqa: PTH105
    return True


def _interpreter(script: bytes, root: bytes) -> tuple[str | None, bytes]:
    """The interpreter inside `root` that a script's first line(s) name, and the rest of
    the script; None when they name none (or pass it arguments)."""
    trampoline = _TRAMPOLINE.match(script)
    if trampoline is not None:
        named, rest = trampoline.group(1) or trampoline.group(2), script[trampoline.end() :]
    else:
        first, _, rest = script.partition(b"\n")
        words = first[2:].split() if first.startswith(b"#!") else []
        if len(words) != 1:  # `#!python -E`: arguments the preamble would have to carry
            return None, b""
        named = words[0]
    if not named.startswith(root + b"/"):
        return None, b""
    return os.fsdecode(named), rest


def rewrite_path(source: str, target: str, old: bytes, new: bytes) -> bool:
    """Write `source` to `target` (the same file: in place) with the path `old` replaced
    by `new`, if it names `old` and is small enough to be a script or a config file."""
    if os.path.getsize(source) > _LIMIT:  # noqa: PTH202
        return False
    with open(source, "rb") as handle:  # noqa: PTH123
        data = handle.read()
    if old not in data:
        return False
    with open(target, "wb") as handle:  # noqa: PTH123
        handle.write(data.replace(old, new))
    shutil.copymode(source, target)
    return True


__all__ = ["relocatable_scripts", "rewrite_path"]
