"""Planted secrets: run the CLI keeping every output, then search every output and every
file for the known values (tests/e2e/test_secrets.py, tests/e2e/test_erp.py).

The one place that may hold a value is the supervisord program file an instance is
started from (mode 0600 in a 0700 directory): supervisord restarts instances from it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.support.project import Project


class Recorder:
    """Runs the CLI and keeps every output for the final search."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.outputs: list[str] = []

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 180, **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = self.project.run(*args, check=check, env=env, timeout=timeout)
        self.keep(result, *args)
        return result

    def keep(self, result: subprocess.CompletedProcess[str], *args: str) -> None:
        """Keep the output of a command run another way (a crash, a pipe)."""
        # Labelled by the command's first words: the test's own argv may hold a value.
        self.outputs.append(f"$ conveyor {' '.join(args[:2])}\n{result.stdout}\n{result.stderr}")


def forms(values: Iterable[str]) -> list[str]:
    """The values as they would be written: as they are, and JSON-escaped."""
    values = list(values)
    return values + [json.dumps(v)[1:-1] for v in values]


def assert_nowhere_but_programs(
    project: Project, values: Iterable[str], outputs: list[str], roots: Iterable[Path] = ()
) -> list[Path]:
    """No output and no file under the Conveyor home, the project and `roots` holds one of
    `values`, but the 0600 program files in their 0700 directory; returns those."""
    planted = forms(values)
    for output in outputs:
        for value in planted:
            assert value not in output, f"{value!r} in the output of {output[:200]}"
    holders = []
    for root in (project.home, project.root, *roots):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                content = path.read_bytes()
                if any(value.encode() in content for value in planted):
                    holders.append(path)
    programs = project.home / "supervisor" / "programs"
    assert holders, "the instances' program files should hold their environment"
    for path in holders:
        assert path.parent == programs, f"a secret value in {path}"
        assert path.stat().st_mode & 0o777 == 0o600
    assert programs.stat().st_mode & 0o777 == 0o700
    return holders
