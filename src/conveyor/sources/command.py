"""A metric from a command: the last non-empty line of its stdout is the number.

A string runs through /bin/sh -c, a list is an argv. Exit 0 is required:
a non-zero exit is a failed read, reported with the last lines of stderr
(stderr is never read for the number, so a command may log there freely).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from conveyor.analysis.custom import CommandOutput
from conveyor.checks.command import _display, _last_line
from conveyor.sources.base import MetricSourceError, parse_reading, shorten
from conveyor.sources.process import run_process

__all__ = ["CommandSource"]

_STDERR_LINES = 3
_LINE_CHARS = 200


def _last_lines(tail: bytes, count: int) -> str:
    lines = [line for line in tail.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return " | ".join(shorten(line, _LINE_CHARS) for line in lines[-count:])


class CommandSource:
    """The number a command prints last on stdout, exiting 0 within `timeout` seconds.

    `command` is a string (run by /bin/sh -c) or an argv list; `env` is added
    to Conveyor's environment; `cwd` is where it runs (default: here).
    """

    def __init__(
        self,
        command: str | Sequence[str],
        timeout: float = 10.0,
        *,
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        if not self.argv or not self.argv[-1]:
            raise ValueError("CommandSource needs a command")
        self.timeout = timeout
        self.cwd = cwd
        self.env = dict(env or {})

    @classmethod
    def from_spec(
        cls,
        spec: CommandOutput,
        *,
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandSource:
        return cls(spec.argv, spec.timeout, cwd=cwd, env=env)

    def __repr__(self) -> str:
        return f"CommandSource({self.argv!r}, timeout={self.timeout})"

    @property
    def description(self) -> str:
        return f'command "{_display(self.argv)}"'

    async def read(self) -> float:
        where = self.description
        try:
            finished = await run_process(self.argv, self.timeout, cwd=self.cwd, env=self.env)
        except OSError as exc:
            raise MetricSourceError(f"{where}: cannot run: {exc.strerror or exc}") from None
        if finished.timed_out:
            raise MetricSourceError(f"{where}: timed out after {self.timeout:g} s, killed")
        if finished.returncode != 0:
            stderr = _last_lines(finished.stderr, _STDERR_LINES)
            raise MetricSourceError(
                f"{where}: {finished.status}: {stderr}"
                if stderr
                else f"{where}: {finished.status}, nothing on stderr"
            )
        line = _last_line(finished.stdout)
        if not line:
            raise MetricSourceError(f"{where}: printed nothing on stdout")
        return parse_reading(line, f"{where}: last line of stdout")
