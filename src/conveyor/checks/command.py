"""Command check: a program that exits 0 when the target is healthy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from conveyor.checks.base import CheckResult

_TAIL_BYTES = 16 * 1024  # only the last line is reported; keep a bounded tail
_LINE_CHARS = 200
_COMMAND_CHARS = 80
# After the command exits, how long a leftover child may keep its output open
# before the whole process group is killed.
_STRAGGLER_GRACE = 0.5


def _display(argv: Sequence[str]) -> str:
    shown = argv[2] if len(argv) == 3 and argv[1] == "-c" else shlex.join(argv)
    return shown if len(shown) <= _COMMAND_CHARS else shown[: _COMMAND_CHARS - 3] + "..."


def _last_line(tail: bytes) -> str:
    for raw in reversed(tail.decode("utf-8", errors="replace").splitlines()):
        line = raw.strip()
        if line:
            return line if len(line) <= _LINE_CHARS else line[: _LINE_CHARS - 3] + "..."
    return ""


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The command runs in its own session, so its pid is its process group id;
    # killing the group also takes the children a shell may have started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _read_tail(fd: int, tail: bytearray) -> None:
    """Read the pipe `fd` to its end (or until cancelled), keeping the last bytes; closes it."""
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader()
    with open(fd, "rb", buffering=0, closefd=True) as pipe:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), pipe
        )
        try:
            while chunk := await stream.read(65536):
                tail += chunk
                if len(tail) > _TAIL_BYTES:
                    del tail[: len(tail) - _TAIL_BYTES]
        finally:
            transport.close()


class CommandCheck:
    """`argv` exits 0 within `timeout` seconds.

    `env` is added to Conveyor's own environment. On timeout the command's whole
    process group is killed. The result's detail holds the exit code and the
    last line the command printed (stdout and stderr together).
    """

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not argv:
            raise ValueError("CommandCheck needs a non-empty argv")
        self.argv = list(argv)
        self.cwd = Path(cwd) if cwd is not None else None
        self.env = dict(env or {})
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"CommandCheck({self.argv!r}, cwd={self.cwd!r}, timeout={self.timeout})"

    async def run(self) -> CheckResult:
        """Run the command once; never raises for a failing command."""
        head = f"{_display(self.argv)} ->"
        start = time.perf_counter()
        # Our own pipe rather than asyncio's PIPE: with asyncio's, `wait()` does
        # not return until every child holding the output has closed it too.
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_fd)
            reason = exc.strerror or str(exc)
            return CheckResult(False, f"{head} cannot run: {reason}", time.perf_counter() - start)
        finally:
            os.close(write_fd)

        tail = bytearray()
        reader = asyncio.create_task(_read_tail(read_fd, tail))
        timed_out = False
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    await proc.wait()
            except TimeoutError:
                timed_out = True
                _kill_group(proc)
                await proc.wait()
            duration = time.perf_counter() - start
            try:
                await asyncio.wait_for(asyncio.shield(reader), _STRAGGLER_GRACE)
            except TimeoutError:
                # A background child still holds the output pipe open.
                _kill_group(proc)
                # If it left the process group too, give up on the rest of the output.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader, _STRAGGLER_GRACE)
        finally:
            if proc.returncode is None:  # cancelled from outside
                _kill_group(proc)
                await proc.wait()  # SIGKILL is prompt; reaping also releases the transport
            if not reader.done():
                reader.cancel()

        line = _last_line(bytes(tail))
        suffix = f": {line}" if line else ""
        if timed_out:
            detail = f"{head} timed out after {self.timeout:g} s, killed{suffix}"
            return CheckResult(False, detail, duration)
        code = proc.returncode
        status = (
            f"exit {code}" if code is not None and code >= 0 else f"killed by signal {-(code or 0)}"
        )
        detail = f"{head} {status} in {duration * 1000:.0f} ms{suffix}"
        return CheckResult(code == 0, detail, duration)
