"""Which migration tool a `migrate.command` runs, and how to ask it what is pending.

Conveyor skips the backup and the migration when nothing is pending, so it
has to ask the tool: Django (`manage.py migrate --check`, then `--plan` for
the names), Alembic (`alembic current` against `alembic heads`), or the
`migrate.pending` command of the config (exit 0: nothing pending, 1: pending).
Everything here is pure: commands are argv lists, outputs are parsed from text.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.config.models import MigrateConfig

_SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ">", "<", ">>"}
# Options of `manage.py migrate` that say which project and database: kept for every
# command Conveyor derives from it (the others, such as --noinput, are the migration's).
_DJANGO_OPTIONS = ("--settings", "--database", "--pythonpath")


@dataclass(frozen=True)
class Django:
    """`manage.py migrate` (or `django-admin migrate`): `prefix` runs manage.py."""

    prefix: tuple[str, ...]
    options: tuple[str, ...] = ()
    name: str = "django"

    def check_argv(self) -> list[str]:
        """Exits 0 when nothing is pending, 1 when something is."""
        return [*self.prefix, "migrate", "--check", *self.options]

    def plan_argv(self) -> list[str]:
        """Lists the pending migrations, `app.name` one a line."""
        return [*self.prefix, "migrate", "--plan", *self.options]

    def sqlmigrate_argv(self, app: str, migration: str) -> list[str]:
        """Prints the SQL of one migration."""
        return [*self.prefix, "sqlmigrate", app, migration, *self.options]


@dataclass(frozen=True)
class Alembic:
    """`alembic upgrade head`: `prefix` runs alembic with the same options (-c, -x)."""

    prefix: tuple[str, ...]
    name: str = "alembic"

    def current_argv(self) -> list[str]:
        return [*self.prefix, "current"]

    def heads_argv(self) -> list[str]:
        return [*self.prefix, "heads"]


Tool = Django | Alembic


def detect(command: str | list[str]) -> Tool | None:
    """The migration tool `command` runs, or None when it is none Conveyor knows (or a
    shell line too involved to derive other commands from).

    >>> detect("python manage.py migrate --noinput")
    Django(prefix=('python', 'manage.py'), options=(), name='django')
    >>> detect([".venv/bin/alembic", "-c", "db.ini", "upgrade", "head"]).current_argv()
    ['.venv/bin/alembic', '-c', 'db.ini', 'current']
    >>> detect("alembic upgrade +1") is None
    True
    """
    words = _words(command)
    if words is None:
        return None
    return _django(words) or _alembic(words)


def _words(command: str | list[str]) -> list[str] | None:
    if isinstance(command, list):
        if (
            len(command) == 3
            and PurePosixPath(command[0]).name in ("sh", "bash")
            and (command[1] == "-c")
        ):
            return _words(command[2])
        return list(command)
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if any(w in _SHELL_OPERATORS or w.startswith("$(") or "`" in w for w in words):
        return None
    if words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        return None  # VAR=value before it: the derived commands would need it too
    return words


def _django(words: list[str]) -> Django | None:
    for i, word in enumerate(words[:-1]):
        name = PurePosixPath(word).name
        if name in ("manage.py", "django-admin") and words[i + 1] == "migrate":
            return Django(tuple(words[: i + 1]), tuple(_django_options(words[i + 2 :])))
    return None


def _django_options(args: list[str]) -> list[str]:
    kept: list[str] = []
    for i, arg in enumerate(args):
        if arg.split("=", 1)[0] in _DJANGO_OPTIONS:
            kept.append(arg)
            if "=" not in arg and i + 1 < len(args):
                kept.append(args[i + 1])
    return kept


def _alembic(words: list[str]) -> Alembic | None:
    for i, word in enumerate(words):
        if PurePosixPath(word).name != "alembic":
            continue
        if "upgrade" not in words[i + 1 :]:
            return None
        at = words.index("upgrade", i + 1)
        targets = [w for w in words[at + 1 :] if not w.startswith("-")]
        if targets not in (["head"], ["heads"]) or "--sql" in words:
            return None  # an upgrade to a given revision: what is pending depends on it
        return Alembic(tuple(words[:at]))
    return None


# -- outputs ----------------------------------------------------------------------------

_DJANGO_PLANNED = re.compile(r"^\s*([A-Za-z_][\w]*)\.([\w]+)\s*$")


def django_plan(output: str) -> list[tuple[str, str]]:
    """(app, migration) of each migration `manage.py migrate --plan` lists, in order.

    >>> django_plan("Planned operations:\\nshop.0002_item_name\\n    Alter field name on item\\n")
    [('shop', '0002_item_name')]
    >>> django_plan("Planned operations:\\n  No planned migration operations.\\n")
    []
    """
    after = output.split("Planned operations:", 1)[-1]
    return [
        (m.group(1), m.group(2))
        for line in after.splitlines()
        if not line.startswith((" ", "\t")) and (m := _DJANGO_PLANNED.match(line))
    ]


_ALEMBIC_REVISION = re.compile(r"^([0-9A-Za-z_]+)((?:\s+\([^)]*\))*)\s*(?:,.*)?$")


def alembic_revisions(output: str) -> set[str]:
    """The revisions `alembic current` or `alembic heads` printed (its log lines aside).

    >>> sorted(alembic_revisions("INFO  [alembic] Context impl.\\n0002 (head)\\n"))
    ['0002']
    >>> alembic_revisions("INFO  [alembic.runtime.migration] Will assume transactional DDL.\\n")
    set()
    """
    found = set()
    for line in output.splitlines():
        m = _ALEMBIC_REVISION.match(line.strip())
        if m and not line.startswith(("INFO", "WARN", "ERROR", "DEBUG")):
            found.add(m.group(1))
    return found


def describe_pending(names: list[str], limit: int = 5) -> str:
    """`shop.0002_x, shop.0003_y` (and how many more)."""
    shown = ", ".join(names[:limit])
    more = len(names) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def asks_pending(migrate: MigrateConfig) -> bool:
    """Whether a deploy asks what is pending before it backs up and migrates: with a
    `migrate.pending` command, or a tool Conveyor knows (not with `pending: false`)."""
    if migrate.pending is False:
        return False
    return migrate.pending is not True or detect(migrate.command) is not None
