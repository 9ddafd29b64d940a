"""The `Target` protocol: where instances of a release run."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# Instance states reported by a target.
STARTING = "starting"
RUNNING = "running"
BACKOFF = "backoff"  # crashed and being restarted by the supervisor
STOPPED = "stopped"
EXITED = "exited"
FATAL = "fatal"  # the supervisor gave up restarting it
UNKNOWN = "unknown"


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a target needs to run one instance of a release."""

    name: str  # unique per Conveyor home, e.g. "staging-api-3f2a9c1e-1"
    environment: str
    service: str
    release_id: str
    release_dir: Path  # working directory; read-only
    command: list[str]  # argv; a shell command arrives as ["/bin/sh", "-c", "..."]
    env: dict[str, str]  # added to the instance's environment (PORT, CONVEYOR_* included)
    port: int
    stop_timeout: float  # seconds between SIGTERM and SIGKILL
    log_path: Path  # stdout and stderr of the instance, appended


@dataclass(frozen=True)
class InstanceStatus:
    """What the target observes of one instance."""

    name: str
    state: str  # one of the constants above
    pid: int | None = None
    started_at: float | None = None  # epoch seconds of the current process start
    restarts: int = 0  # times the process exited unexpectedly and was restarted
    detail: str = ""


@dataclass(frozen=True)
class CommandResult:
    """Outcome of a one-off command."""

    exit_code: int
    output: str
    duration: float
    timed_out: bool = False
    extra: dict[str, str] = field(default_factory=dict)


class Target(Protocol):
    """Runs, stops and observes instances. All methods are idempotent."""

    async def start(self, spec: InstanceSpec) -> None:
        """Start the instance (no-op if it is already running under this name)."""
        ...

    async def stop(self, name: str, timeout: float) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after `timeout`) and forget it.

        No-op when no such instance exists.
        """
        ...

    async def status(self, name: str) -> InstanceStatus:
        """The state of one instance; state UNKNOWN when the target has none."""
        ...

    async def list(self) -> builtins.list[InstanceStatus]:
        """Every instance this target runs for the Conveyor home."""
        ...

    async def logs(self, name: str, lines: int) -> builtins.list[str]:
        """The last `lines` lines of the instance's output."""
        ...

    def follow(self, name: str, lines: int) -> AsyncIterator[str]:
        """The last `lines` lines, then every new line as it is written."""
        ...

    async def run_command(
        self,
        command: builtins.list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        log_path: Path | None = None,
    ) -> CommandResult:
        """Run a one-off command in a release's context (migrations, hooks); its output
        is also appended to `log_path`."""
        ...

    async def run_attached(
        self, command: builtins.list[str], cwd: Path, env: dict[str, str]
    ) -> int:
        """Run a one-off command attached to this process's stdin, stdout and stderr
        (`conveyor run`: interactive on a terminal) and return its exit status, a
        shell's way (128+N when killed by signal N). Raises `CommandNotRunError`
        when the command cannot be started."""
        ...
