"""Run a command within a timeout and keep the ends of its output.

The process handling of `conveyor.checks.command` (own pipes, a session per
command, the whole process group killed on timeout, a grace period for
children that keep the output open), with stdout and stderr apart or merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.checks.command import _STRAGGLER_GRACE, _kill_group, _read_tail

__all__ = ["Finished", "run_process"]


@dataclass(frozen=True, slots=True)
class Finished:
    """How a command ended: exit code (negative: killed by that signal), output tails."""

    returncode: int
    stdout: bytes  # the last 16 KiB; stdout and stderr together when merged
    stderr: bytes  # empty when merged
    timed_out: bool
    duration: float  # seconds, until the command exited or was killed

    @property
    def status(self) -> str:
        """ "exit 3" or "killed by signal 9"."""
        code = self.returncode
        return f"exit {code}" if code >= 0 else f"killed by signal {-code}"


async def run_process(
    argv: Sequence[str],
    timeout: float,
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    merge_stderr: bool = False,
) -> Finished:
    """Run `argv` (with `env` added to ours) for at most `timeout` seconds.

    On timeout the command's whole process group is killed and `timed_out`
    is set. Raises `OSError` when the command cannot be started.
    """
    start = time.perf_counter()
    # Our own pipes rather than asyncio's PIPE: with asyncio's, `wait()` does
    # not return until every child holding the output has closed it too.
    out_read, out_write = os.pipe()
    err_read, err_write = (-1, -1) if merge_stderr else os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out_write,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else err_write,
            start_new_session=True,
        )
    except OSError:
        os.close(out_read)
        if not merge_stderr:
            os.close(err_read)
        raise
    finally:
        os.close(out_write)
        if not merge_stderr:
            os.close(err_write)

    stdout, stderr = bytearray(), bytearray()
    tails = [_read_tail(out_read, stdout)]
    if not merge_stderr:
        tails.append(_read_tail(err_read, stderr))
    readers = asyncio.gather(*tails)
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            timed_out = True
            _kill_group(proc)
            await proc.wait()
        duration = time.perf_counter() - start
        try:
            await asyncio.wait_for(asyncio.shield(readers), _STRAGGLER_GRACE)
        except TimeoutError:
            # A background child still holds an output pipe open.
            _kill_group(proc)
            # If it left the process group too, give up on the rest of the output.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(readers, _STRAGGLER_GRACE)
    finally:
        if proc.returncode is None:  # cancelled from outside
            _kill_group(proc)
            await proc.wait()
        if not readers.done():
            readers.cancel()
    assert proc.returncode is not None
    return Finished(proc.returncode, bytes(stdout), bytes(stderr), timed_out, duration)
