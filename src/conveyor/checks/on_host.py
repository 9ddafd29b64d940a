"""Command checks of an instance on another host: health checks of type `command` and
smoke tests with `command:` run where the instance runs (its host, its release
directory there), not on the deployer, so `localhost`, files and programs are the
instance's."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.checks.base import Check, CheckResult
from conveyor.checks.command import CommandCheck, _display, _last_line
from conveyor.errors import ConveyorError
from conveyor.targets.base import LOCAL_HOST

if TYPE_CHECKING:
    from conveyor.targets.base import Target
    from conveyor.targets.ssh import SshTarget


class HostCommandCheck:
    """`argv` exits 0 within `timeout` seconds, run on `host` through its SSH target."""

    def __init__(
        self,
        target: SshTarget,
        host: str,
        argv: Sequence[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
    ) -> None:
        self.target = target
        self.host = host
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"HostCommandCheck({self.argv!r}, host={self.host!r}, timeout={self.timeout})"

    async def run(self) -> CheckResult:
        """Run the command once on the host; never raises for a failing command."""
        head = f"{_display(self.argv)} on {self.host} ->"
        start = time.perf_counter()
        try:
            done = await self.target.run_command(
                self.argv, self.cwd, self.env, self.timeout, host=self.host
            )
        except ConveyorError as error:
            return CheckResult(
                False, f"{head} cannot run: {error.message}", time.perf_counter() - start
            )
        line = _last_line(done.output.encode())
        suffix = f": {line}" if line else ""
        if done.timed_out:
            detail = f"{head} timed out after {self.timeout:g} s, killed{suffix}"
            return CheckResult(False, detail, done.duration)
        detail = f"{head} exit {done.exit_code} in {done.duration * 1000:.0f} ms{suffix}"
        return CheckResult(done.exit_code == 0, detail, done.duration)


def on_instance_host(check: Check, target: Target, host: str) -> Check:
    """`check` as it must run for an instance on `host`: a command check moves to that
    host when it is not this machine; any other check stays as it is."""
    from conveyor.targets.ssh import SshTarget

    if host == LOCAL_HOST or not isinstance(check, CommandCheck):
        return check
    if not isinstance(target, SshTarget):
        return check
    cwd = check.cwd or Path()
    return HostCommandCheck(target, host, check.argv, cwd, check.env, check.timeout)
