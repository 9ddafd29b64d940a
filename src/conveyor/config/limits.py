"""The bounds of `conveyor.yml`: what the loader refuses before it gets expensive.

The numbers are far above any real project and far below what hurts the
machine (a YAML alias bomb, `--config /dev/zero`, a million replicas). The
README's "Limits" table lists them. Pure: no YAML, no pydantic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "MAX_APPROVALS",
    "MAX_DEPTH",
    "MAX_DURATION",
    "MAX_DURATION_TEXT",
    "MAX_FILE_BYTES",
    "MAX_NAME",
    "MAX_REPLICAS",
    "MAX_TEXT",
    "MAX_VALUES",
    "MIN_HEALTH_INTERVAL",
    "shape_issue",
]

MAX_FILE_BYTES = 1024 * 1024
"""The largest config file read (a large real one is a few KiB)."""
MAX_VALUES = 20_000
"""The most values (mappings, lists, scalars) the file may hold once its YAML aliases
(`*name`) are expanded."""
MAX_TEXT = 4 * MAX_FILE_BYTES
"""The most characters of text the file may hold once its aliases are expanded."""
MAX_DEPTH = 32
"""The deepest nesting of mappings and lists (a real file nests about 6 deep)."""
MAX_NAME = 63
"""The longest name of a project, service, environment, database, job or analysis:
a DNS label. Names end up in paths, process names and host names."""
MAX_REPLICAS = 1000
"""The most instances of one service (and the largest `max_surge`/`max_unavailable`)."""
MAX_DURATION = 7 * 24 * 3600.0
"""The longest duration, in seconds: 7 days."""
MAX_DURATION_TEXT = "168h"
MAX_APPROVALS = 100
"""The most approvals one deploy may require."""
MIN_HEALTH_INTERVAL = 0.1
"""The shortest time between two health checks, in seconds."""


def shape_issue(data: Any) -> tuple[list[str | int], str] | None:
    """What makes the YAML `data` too big or too deep to validate, or None.

    Returns (key path, message). Counts values as the models would see them, i.e.
    with every alias expanded, without expanding anything: each distinct object's
    expanded size is computed once. A value that contains itself (`&a [*a]`) is an
    issue too. Keys starting with "x-" are skipped: the loader drops them unread.
    Iterative, so deep input cannot exhaust the stack.
    """
    sizes: dict[int, int] = {}  # container id -> values in it, aliases expanded
    texts: dict[int, int] = {}  # container id -> characters of its strings, aliases expanded
    depths: dict[int, int] = {}
    refs: dict[int, int] = {}  # container id -> how many places hold it (>1: an alias)
    on_path: set[int] = set()
    distinct = 0  # values as written: each container once, with its scalars
    # A container being walked: it, its key path, its container children (the next one
    # to enter last), its own values and characters (scalars and keys).
    stack: list[tuple[Any, list[str | int], list[tuple[str | int, Any]], int, int]] = []

    def enter(value: Any, where: list[str | int]) -> tuple[list[str | int], str] | None:
        nonlocal distinct
        if len(where) >= MAX_DEPTH:
            return where, f"nested more than {MAX_DEPTH} levels deep"
        containers, own, chars = [], 1, 0
        for key, child in _children(value):
            if isinstance(key, str):
                chars += len(key)
            if isinstance(child, dict | list):
                containers.append((key, child))
            else:
                own += 1
                if isinstance(child, str):
                    chars += len(child)
        distinct += own
        on_path.add(id(value))
        containers.reverse()
        stack.append((value, where, containers, own, chars))
        return None

    if not isinstance(data, dict | list):
        return None
    issue = enter(data, [])
    while stack and issue is None:
        value, where, pending, own, chars = stack[-1]
        if pending:
            name, child = pending[-1]
            if id(child) not in sizes:
                if id(child) in on_path:
                    return [*where, name], "a YAML alias refers to a value that contains it"
                issue = enter(child, [*where, name])
                continue
            pending.pop()  # done: count it below
            stack[-1] = (value, where, pending, own + sizes[id(child)], chars + texts[id(child)])
            refs[id(child)] = refs.get(id(child), 0) + 1
            depth = depths[id(child)] + 1
            if depth > depths.get(id(value), 1):
                depths[id(value)] = depth
                if depth + len(where) > MAX_DEPTH:
                    return where, f"nested more than {MAX_DEPTH} levels deep"
            continue
        stack.pop()
        on_path.discard(id(value))
        sizes[id(value)], texts[id(value)] = own, chars
        depths.setdefault(id(value), 1)
    if issue is not None:
        return issue
    if sizes[id(data)] > MAX_VALUES:
        where = _where_expanded(data, refs, lambda c: sizes[id(c)] > MAX_VALUES)
        return where, _too_many(distinct, sizes[id(data)])
    if texts[id(data)] > MAX_TEXT:
        where = _where_expanded(data, refs, lambda c: texts[id(c)] > MAX_TEXT)
        return where, (
            f"YAML aliases (*name) expand this to more than {MAX_TEXT // MAX_FILE_BYTES} MiB "
            "of text; write the values out or use fewer aliases"
        )
    return None


def _where_expanded(
    data: Any, refs: dict[int, int], too_big: Callable[[Any], bool]
) -> list[str | int]:
    """The key path to blame for a value `too_big`: follow such values down to where
    aliases repeat something (the key as written), or to the last one that is too big."""
    where: list[str | int] = []
    value = data
    while True:
        children = [(k, c) for k, c in _children(value) if isinstance(c, dict | list)]
        if any(refs.get(id(c), 0) > 1 for _, c in children):
            return where
        bigger = [(k, c) for k, c in children if too_big(c)]
        if not bigger:
            return where
        name, value = bigger[0]
        where = [*where, name]


def _children(value: Any) -> list[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return [
            (k if isinstance(k, str | int) else str(k), v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.startswith("x-"))  # dropped unread by the loader
        ]
    if isinstance(value, list):
        return list(enumerate(value))
    return []


def _too_many(distinct: int, expanded: int) -> str:
    if distinct * 10 < expanded:
        return (
            f"YAML aliases (*name) expand this to more than {MAX_VALUES} values "
            "(an alias bomb?); write the values out or use fewer aliases"
        )
    return f"more than {MAX_VALUES} values; a conveyor.yml holds hundreds"
