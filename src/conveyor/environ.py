"""The environment Conveyor gives the programs it starts: minimal, never the deployer's.

Instances, migrations and database tools get their variables from
conveyor.yml (or, for the tools, the few they need); tokens and cloud
credentials in the shell that ran Conveyor stay out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

INHERITED = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "TMPDIR", "SHELL")
# What a program attached to the deployer's terminal (`conveyor run`) needs of it.
TERMINAL = ("TERM", "COLORTERM", "COLUMNS", "LINES")


def minimal_environment() -> dict[str, str]:
    """The inherited variables (`INHERITED` and `LC_*`) of this process, nothing else."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith("LC_")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


INSTANCE_VARIABLES = (
    "PORT",
    "HOST",
    "CONVEYOR_RELEASE",
    "CONVEYOR_ENV",
    "CONVEYOR_SERVICE",
    "CONVEYOR_INSTANCE",
    "DATA_DIR",
)
"""What Conveyor gives each instance when it starts. In `run:`, `env`, `health.command` and
`smoke` commands, `$NAME` and `${NAME}` of these are left alone when the config is read,
and filled in at the start of each instance (see `expand_instance_variables`)."""

_INSTANCE_REFERENCE = re.compile(
    r"\$(?:\{(?P<braced>[A-Z_]+)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Z_]+)\b)"
)


def expand_instance_variables(text: str, values: Mapping[str, str]) -> str:
    """`text` with `$NAME`, `${NAME}` and `${NAME:-default}` of `INSTANCE_VARIABLES` replaced
    from `values`; anything else (other names, names without a value) stays as written.

    >>> expand_instance_variables("127.0.0.1:$PORT ${PORT} ${HOST:-::} $HOME", {"PORT": "8001"})
    '127.0.0.1:8001 8001 :: $HOME'
    """

    def expand(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if name not in INSTANCE_VARIABLES:
            return match.group(0)
        value = values.get(name)
        default = match.group("default")
        if default is not None and not value:
            return default
        return value if value is not None else match.group(0)

    return _INSTANCE_REFERENCE.sub(expand, text) if "$" in text else text


def instance_argv(command: str | Sequence[str], values: Mapping[str, str]) -> list[str]:
    """The argv of a command that runs with an instance's variables: a list gets them
    substituted in each argument (no shell would do it); a string runs through
    `/bin/sh -c` as written, the shell expanding them from the environment."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    return [expand_instance_variables(arg, values) for arg in command]


def expand_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with the instance variables it holds substituted into its other values
    (`DATABASE_PATH: ${DATA_DIR}/db.sqlite3`)."""
    values = {k: env[k] for k in INSTANCE_VARIABLES if k in env}
    return {
        k: v if k in INSTANCE_VARIABLES else expand_instance_variables(v, values)
        for k, v in env.items()
    }


def attached_environment() -> dict[str, str]:
    """`minimal_environment()` plus the terminal's description (`TERMINAL`), for a
    program that talks to the deployer's terminal."""
    terminal = {k: v for k, v in os.environ.items() if k in TERMINAL}
    return {**minimal_environment(), **terminal}
