"""`LocalTarget`: instances run on this machine under the home's supervisord.

One supervisord program per instance, named after `InstanceSpec.name`. The
target only sees programs it added itself (owner `"instance"` in the program
conf), so other programs of the same supervisord (Caddy, ...) are neither
listed nor stopped by it.

Log files: the rule is `paths.instance_logs / f"{name}.log"` (see
`log_path_for`); callers build `InstanceSpec.log_path` with it. A spec that
names another file is honoured while the instance exists (the path is kept in
its program conf); once it is stopped, `logs`/`follow` fall back to the rule.
supervisord rotates the file at 10 MB into `.1` and `.2`; `logs` reads across
the newest rotation and `follow` reopens a rotated file.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from conveyor.environ import attached_environment, minimal_environment
from conveyor.errors import CommandNotRunError, TargetError
from conveyor.paths import Paths
from conveyor.redaction import LineRedactor
from conveyor.runas import RunUser
from conveyor.targets.base import (
    ACCESSORY_OWNER,
    INSTANCE_OWNER,
    LOCAL_HOST,
    UNKNOWN,
    CommandResult,
    Endpoint,
    InstanceSpec,
    InstanceStatus,
)
from conveyor.targets.ports import free_local_port
from conveyor.targets.supervisor import Supervisor, check_program_name

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.targets.base import Target

__all__ = ["INSTANCE_OWNER", "LOCAL_INTERFACE", "LocalTarget", "build"]

LOCAL_INTERFACE = "127.0.0.1"  # instances listen on loopback: only the router reaches them

_OWNERS = (INSTANCE_OWNER, ACCESSORY_OWNER)  # the programs it starts, stops and observes
FOLLOW_POLL_SECONDS = 0.2
_OUTPUT_CAP = 1 << 20  # bytes of one-off command output kept (the tail)
_BLOCK = 64 * 1024


def build(rt: Runtime, environment: str) -> LocalTarget:
    """The `local` plugin (`conveyor.plugins`): the home's supervisord, for every environment."""
    return LocalTarget(rt.supervisor, rt.paths)


async def ensure_running(rt: Runtime, environments: Sequence[str]) -> None:
    """The `local` plugin's `ensure`: the home's supervisord runs (for every environment)."""
    await rt.ensure_supervisor()


class LocalTarget:
    """The `Target` of a single host: supervisord programs of one Conveyor home.

    Its one host is called "local"; instances listen on 127.0.0.1. Releases are
    built where they run, so nothing is shipped (`ships_releases` is False).
    """

    name = "local"
    ships_releases = False

    def __init__(self, supervisor: Supervisor, paths: Paths) -> None:
        self.supervisor = supervisor
        self.paths = paths

    def hosts(self, roles: Sequence[str] = ()) -> tuple[str, ...]:
        return (LOCAL_HOST,)

    async def reserve(self, host: str, taken: set[int], ports: range) -> Endpoint:
        self._require_local(host)
        return Endpoint(LOCAL_HOST, LOCAL_INTERFACE, free_local_port(LOCAL_INTERFACE, taken, ports))

    async def ship(self, host: str, release_dir: Path, digest: str) -> None:
        """Nothing to ship: the release was built and sealed on this machine."""
        self._require_local(host)

    def _require_local(self, host: str) -> None:
        if host != LOCAL_HOST:
            raise TargetError(
                f'the local target has only the host "{LOCAL_HOST}", not "{host}"',
                hint="instances on other hosts need an environment with `target: ssh`",
            )

    def log_path_for(self, name: str) -> Path:
        """Where the output of instance `name` goes: `<home>/logs/instances/<name>.log`."""
        check_program_name(name)
        return self.paths.instance_logs / f"{name}.log"

    def _log_path(self, name: str) -> Path:
        return self.supervisor.program_log(name) or self.log_path_for(name)

    def _is_ours(self, name: str) -> bool:
        return self.supervisor.program_owner(name) in (None, *_OWNERS)

    async def start(self, spec: InstanceSpec) -> None:
        """Start the instance (no-op if it is already running under this name).

        The process gets supervisord's environment plus `spec.env`, runs in
        `spec.release_dir` and writes stdout and stderr to `spec.log_path`. A
        spec that differs from the running one replaces it.
        """
        self._require_local(spec.host)
        if not spec.release_dir.is_dir():
            raise TargetError(
                f"instance {spec.name}: release directory {spec.release_dir} does not exist",
                hint="build the release again (`conveyor build`)",
            )
        await asyncio.to_thread(
            self.supervisor.add_program,
            spec.name,
            spec.command,
            spec.release_dir,
            spec.env,
            spec.log_path,
            spec.stop_timeout,
            owner=spec.owner,
            stop_signal=spec.stop_signal,
            user=spec.user,
            stop_as_group=spec.stop_as_group,
        )

    async def stop(self, name: str, timeout: float) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after `timeout`) and forget it.

        No-op when no such instance exists (including programs of other owners).
        The signals go to the whole process group of the instance. supervisord
        itself sends SIGKILL after the spec's `stop_timeout`, so a longer
        `timeout` here cannot extend that.
        """
        if not await asyncio.to_thread(self._is_ours, name):
            return
        await asyncio.to_thread(self.supervisor.remove_program, name, timeout)

    async def status(self, name: str) -> InstanceStatus:
        """The state of one instance; state UNKNOWN when the target has none."""
        info = await asyncio.to_thread(self.supervisor.program_info, name)
        if info is None or info.owner not in _OWNERS:
            return InstanceStatus(name=name, state=UNKNOWN)
        return info.status

    async def list(self) -> builtins.list[InstanceStatus]:
        """Every instance this target runs for the Conveyor home (not its accessories),
        sorted by name."""
        infos = await asyncio.to_thread(self.supervisor.all_programs, INSTANCE_OWNER)
        return [info.status for info in infos]

    async def logs(self, name: str, lines: int) -> builtins.list[str]:
        """The last `lines` lines of the instance's output (read from the end)."""
        path = await asyncio.to_thread(self._log_path, name)
        return await asyncio.to_thread(_tail_with_rotation, path, lines)

    async def follow(self, name: str, lines: int) -> AsyncIterator[str]:
        """The last `lines` lines, then every new line as it is written.

        Polls every 0.2 s; waits for the file if it does not exist yet and
        reopens it when supervisord rotates or truncates it.
        """
        path = await asyncio.to_thread(self._log_path, name)
        tail, offset = await asyncio.to_thread(_tail, path, lines, True)
        for line in tail:
            yield line
        handle = None
        inode = -1
        pending = b""
        try:
            while True:
                if handle is None:
                    try:
                        handle = path.open("rb")
                    except FileNotFoundError:
                        await asyncio.sleep(FOLLOW_POLL_SECONDS)
                        continue
                    inode = os.fstat(handle.fileno()).st_ino
                    handle.seek(offset)
                chunk = handle.read(_BLOCK)
                if chunk:
                    *complete, pending = (pending + chunk).split(b"\n")
                    for raw in complete:
                        yield _decode(raw)
                    continue
                try:
                    current = path.stat()
                except FileNotFoundError:
                    current = None
                if current is None or current.st_ino != inode or current.st_size < handle.tell():
                    # Rotated or truncated: everything of the old file has been read.
                    if pending:
                        yield _decode(pending)
                        pending = b""
                    handle.close()
                    handle = None
                    offset = 0
                    continue
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
        finally:
            if handle is not None:
                handle.close()

    async def run_command(
        self,
        command: builtins.list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        log_path: Path | None = None,
        user: RunUser | None = None,
    ) -> CommandResult:
        """Run a one-off command in a release's context (migrations, hooks), as `user`.

        The environment is the instances' minimal one plus `env` (nothing from
        the deployer's shell but PATH, HOME, locale and the like); stdout and
        stderr are merged (the last 1 MiB is kept, and all of it is appended to
        `log_path` as it comes). On timeout the command's whole process group
        gets SIGKILL and the result has `timed_out=True`.
        """
        if not command:
            raise TargetError("one-off command is empty", hint="give an argv list")
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                cwd=cwd,
                env={**minimal_environment(), **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one
                **(user.popen_kwargs() if user else {}),
            )
        except OSError as exc:
            raise TargetError(
                f"cannot run {command[0]!r} in {cwd}: {exc.strerror or exc}",
                hint="check the command and that the release directory exists",
            ) from exc
        output = bytearray()
        log = log_path.open("ab") if log_path is not None else None
        masked = LineRedactor()  # the log gets the output with the secrets masked

        async def pump() -> None:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(_BLOCK):
                if log is not None:
                    log.write(masked.feed(chunk))
                    log.flush()
                output.extend(chunk)
                if len(output) > _OUTPUT_CAP:
                    del output[: len(output) - _OUTPUT_CAP]

        reader = asyncio.create_task(pump())
        timed_out = False
        try:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                timed_out = True
                _kill_group(proc.pid)
                await proc.wait()
            except BaseException:  # cancelled: do not leave the command running
                _kill_group(proc.pid)
                reader.cancel()
                raise
            try:
                # Leftover children holding the pipe would keep it open forever.
                await asyncio.wait_for(asyncio.shield(reader), 1.0 if timed_out else 5.0)
            except TimeoutError:
                _kill_group(proc.pid)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            if log is not None:
                log.write(masked.flush())
                log.close()
        assert proc.returncode is not None
        return CommandResult(
            exit_code=proc.returncode,
            output=output.decode(errors="replace"),
            duration=time.monotonic() - started,
            timed_out=timed_out,
        )

    async def run_attached(
        self,
        command: builtins.list[str],
        cwd: Path,
        env: dict[str, str],
        user: RunUser | None = None,
    ) -> int:
        """Run a one-off command, as `user`, attached to this process's stdin, stdout and
        stderr.

        The child stays in Conveyor's process group, so on a terminal it is in
        the foreground: it reads the keyboard and Ctrl-C (SIGINT, SIGQUIT) goes
        to it, while Conveyor ignores them and waits for its exit status.
        SIGTERM and SIGHUP sent to Conveyor are passed on to it. Environment:
        the instances' minimal one, the terminal's TERM and size, then `env`.
        """
        if not command:
            raise TargetError("one-off command is empty", hint="give an argv list")
        if not cwd.is_dir():
            raise TargetError(
                f"release directory {cwd} does not exist",
                hint="build and deploy the release again",
            )
        with _attached_signals() as child:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *command,
                    cwd=cwd,
                    env={**attached_environment(), **env},
                    **(user.popen_kwargs() if user else {}),
                )
            except OSError as exc:
                raise _not_run(command[0], exc) from None
            child.append(proc.pid)
            try:
                returncode = await proc.wait()
            except BaseException:  # cancelled: do not leave the command running
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                raise
        # A shell's exit status: 128+N for a command killed by signal N.
        return returncode if returncode >= 0 else 128 - returncode


def _not_run(program: str, exc: OSError) -> TargetError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return CommandNotRunError(
            f"command not found: {program}",
            hint="it runs in the release directory with the service's PATH; "
            "give a path relative to the release (e.g. .venv/bin/python) or an absolute one",
        )
    if exc.errno in (errno.EACCES, errno.ENOEXEC, errno.EPERM):
        return CommandNotRunError(
            f"cannot execute {program}: {reason}",
            hint="check that it is an executable file with a valid #! line",
            exit_code=126,
        )
    return TargetError(f"cannot run {program}: {reason}")


_IGNORED = (signal.SIGINT, signal.SIGQUIT)  # the terminal sends them to the child too
_FORWARDED = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _attached_signals() -> Iterator[list[int]]:
    """While a child runs attached: ignore the terminal's interrupts, forward
    termination to the child (whose pid the caller appends to the list).

    Python-level handlers rather than SIG_IGN: exec resets handled signals to
    their default in the child, whereas an ignored signal would stay ignored
    there and Ctrl-C would not stop it.
    """
    child: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield child  # signal handlers can only be set from the main thread
        return

    def ignore(signum: int, frame: FrameType | None) -> None:
        pass

    def forward(signum: int, frame: FrameType | None) -> None:
        for pid in child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {sig: signal.getsignal(sig) for sig in (*_IGNORED, *_FORWARDED)}
    for sig in _IGNORED:
        signal.signal(sig, ignore)
    for sig in _FORWARDED:
        signal.signal(sig, forward)
    try:
        yield child
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _decode(raw: bytes) -> str:
    return raw.decode(errors="replace").removesuffix("\r")


def _tail(path: Path, lines: int, complete_only: bool = False) -> tuple[list[str], int]:
    """The last `lines` lines of `path` and the offset just after them.

    Reads backwards in blocks, so the cost depends on `lines`, not on the
    file size. With `complete_only`, a last line without its newline yet is
    left out (and the offset points at its start).
    """
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return [], 0
    with f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        data = b""
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    if complete_only:
        cut = data.rfind(b"\n") + 1
        end = pos + cut
        data = data[:cut]
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    if pos > 0 and parts:
        parts.pop(0)  # may start mid-line
    if lines <= 0:
        return [], end
    return [_decode(p) for p in parts[-lines:]], end


def _tail_with_rotation(path: Path, lines: int) -> list[str]:
    tail, _ = _tail(path, lines)
    if len(tail) < lines:
        older, _ = _tail(path.with_name(path.name + ".1"), lines - len(tail))
        tail = older + tail
    return tail


if TYPE_CHECKING:

    def _implements_target(target: LocalTarget) -> Target:
        return target  # mypy checks that LocalTarget satisfies the protocol
