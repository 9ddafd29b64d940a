"""The dotenv format of the encrypted files (and of `{dotenv: FILE}` providers).

One `NAME=value` per line; `#` starts a comment line; `export ` before a name is
allowed. A value is bare (surrounding spaces removed), 'single-quoted' (as is)
or "double-quoted" (with \\n, \\", \\\\ escapes, so it may span lines).
"""

from __future__ import annotations

import re

_LINE = re.compile(r"^\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<rest>.*)$")
_BARE = re.compile(r"^[A-Za-z0-9_@%+,./:=~^-]*$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}


class DotenvError(ValueError):
    """A line that is not `NAME=value` (its number in the message, never its text)."""


def parse(text: str) -> dict[str, str]:
    """The variables of dotenv `text`.

    >>> parse('A=1\\n# note\\nexport B = "two\\\\nlines"\\nC=\\'x y\\'\\n')
    {'A': '1', 'B': 'two\\nlines', 'C': 'x y'}
    """
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise DotenvError(f"line {i}: expected NAME=value")
        rest = match["rest"]
        if rest.startswith('"'):
            body = rest[1:]
            while not _closed(body):
                if i >= len(lines):
                    raise DotenvError(f"line {i}: a double-quoted value is not closed")
                body += "\n" + lines[i]
                i += 1
            values[match["name"]] = _unescape(body[: _close_index(body)])
        elif rest.startswith("'"):
            end = rest.find("'", 1)
            if end == -1:
                raise DotenvError(f"line {i}: a single-quoted value is not closed")
            values[match["name"]] = rest[1:end]
        else:
            values[match["name"]] = rest.strip()
    return values


def _close_index(body: str) -> int:
    escaped = False
    for index, char in enumerate(body):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return index
    return -1


def _closed(body: str) -> bool:
    return _close_index(body) != -1


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), body, flags=re.DOTALL)


def render(values: dict[str, str]) -> str:
    """Dotenv text of `values`, sorted by name; `parse` reads it back unchanged.

    >>> render({"B": "a b", "A": "plain"})
    'A=plain\\nB="a b"\\n'
    """
    lines = []
    for name in sorted(values):
        value = values[name]
        if not _BARE.match(value):
            quoted = "".join("\\" + c if c in '"\\$' else c for c in value)
            value = '"' + quoted.replace("\n", "\\n").replace("\r", "\\r") + '"'
        lines.append(f"{name}={value}")
    return "".join(line + "\n" for line in lines)
