"""The environment Conveyor gives the programs it starts: minimal, never the deployer's.

Instances, migrations and database tools get their variables from
conveyor.yml (or, for the tools, the few they need); tokens and cloud
credentials in the shell that ran Conveyor stay out.
"""

from __future__ import annotations

import os

INHERITED = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "TMPDIR", "SHELL")
# What a program attached to the deployer's terminal (`conveyor run`) needs of it.
TERMINAL = ("TERM", "COLORTERM", "COLUMNS", "LINES")


def minimal_environment() -> dict[str, str]:
    """The inherited variables (`INHERITED` and `LC_*`) of this process, nothing else."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith("LC_")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def attached_environment() -> dict[str, str]:
    """`minimal_environment()` plus the terminal's description (`TERMINAL`), for a
    program that talks to the deployer's terminal."""
    terminal = {k: v for k, v in os.environ.items() if k in TERMINAL}
    return {**minimal_environment(), **terminal}
