"""Several independent commands in one SSH session, each with its own output and status.

Every SSH command is a session: a channel, sshd forking a login shell, and a round
trip. `batch_argv` runs named argv lists one after the other in one `sh -c`
script (each quoted once, by `shlex.join`), framing each one's stdout between
lines that carry a random marker; `parse_batch` gives back each one's exit
status and exact stdout. Their stderr is dropped, as the callers only read exit
statuses and stdout. Pure: nothing here touches the network.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping, Sequence


def new_marker() -> str:
    return "cv-" + secrets.token_hex(8)


def batch_argv(parts: Mapping[str, Sequence[str]], marker: str) -> list[str]:
    """argv that runs every part (a name of letters, digits and `_` -> its argv) in order."""
    lines = []
    for name, argv in parts.items():
        if not re.fullmatch(r"\w+", name):
            raise ValueError(f"batch part name {name!r}: letters, digits and _ only")
        lines.append(
            f"printf '\\n%s {name}\\n' \"$1\"; {shlex.join(argv)} 2>/dev/null; "
            f'r=$?; printf \'\\n%s rc %s\\n\' "$1" "$r"'
        )
    return ["sh", "-c", "\n".join(lines), "sh", marker]


def parse_batch(output: str, marker: str) -> dict[str, tuple[int, str]]:
    """Each part's (exit status, stdout) from `batch_argv`'s output; a part missing from
    it (the session ended early) is absent."""
    found: dict[str, tuple[int, str]] = {}
    pattern = re.compile(
        rf"\n{re.escape(marker)} (\w+)\n(.*?)\n{re.escape(marker)} rc (\d+)\n", re.S
    )
    for match in pattern.finditer(output):
        found[match[1]] = (int(match[3]), match[2])
    return found
