"""Processes a dead supervisord left running, found by their session.

supervisord daemonizes with `setsid()`: it leads a session whose id is its pid,
and every program it starts (and their children, unless they call `setsid()`
themselves) stays in that session. Linux does not hand out a pid again while a
session still uses it as its id, so once the supervisord of the pidfile is gone,
every process whose session id is that pid is one of its orphans: instances or a
router that would otherwise keep serving a release Conveyor believes stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Orphan", "describe", "find_group", "find_session", "stop_all"]

_PROC = Path("/proc")
_POLL = 0.02


@dataclass(frozen=True)
class Orphan:
    """A process of a dead supervisord's session."""

    pid: int
    pgid: int
    command: str  # its command line, spaces between the arguments

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})"


def _stat(pid_dir: Path) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session..."""
    try:
        return (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _command(pid_dir: Path) -> str:
    try:
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or "?"


def _ancestors() -> set[int]:
    """This process and its parents: never orphans to stop, whatever their session."""
    found = set()
    pid = os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        fields = _stat(_PROC / str(pid))
        if fields is None:
            break
        pid = int(fields[1])
    return found


def _boot_time(proc: Path) -> float:
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def find_session(session: int, started_after: float = 0.0, proc: Path = _PROC) -> list[Orphan]:
    """Live processes (not zombies) of `session` started after the Unix time
    `started_after`, other than its leader and this process (and its parents)."""
    boot = _boot_time(proc)
    ticks = os.sysconf("SC_CLK_TCK")
    return [
        orphan
        for orphan, fields in _scan(proc)
        if int(fields[3]) == session
        and orphan.pid != session
        and boot + int(fields[19]) / ticks >= started_after  # else older than supervisord
    ]


def find_group(pgid: int, proc: Path = _PROC) -> list[Orphan]:
    """Live processes (not zombies) of process group `pgid`, but this one (and its parents)."""
    return [orphan for orphan, _ in _scan(proc) if orphan.pgid == pgid]


def _scan(proc: Path) -> list[tuple[Orphan, list[str]]]:
    """Every live process but this one and its parents, with its /proc stat fields."""
    mine = _ancestors()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        fields = _stat(entry)
        if fields is None or len(fields) < 20 or fields[0] == "Z":
            continue
        found.append((Orphan(int(entry.name), int(fields[2]), _command(entry)), fields))
    return sorted(found, key=lambda item: item[0].pid)


def alive(pid: int) -> bool:
    fields = _stat(_PROC / str(pid))
    return fields is not None and fields[0] != "Z"


def stop_all(orphans: list[Orphan], grace: float) -> list[Orphan]:
    """SIGTERM each orphan's process group, SIGKILL after `grace` seconds; the ones left.

    Waits (a little past the SIGKILL) until they have exited.
    """
    _signal(orphans, signal.SIGTERM)
    deadline = time.monotonic() + grace
    killed = False
    while True:
        left = [o for o in orphans if alive(o.pid)]
        if not left:
            return []
        now = time.monotonic()
        if now >= deadline:
            if killed:
                return left
            _signal(left, signal.SIGKILL)
            killed = True
            deadline = now + 5.0
        time.sleep(_POLL)


def _signal(orphans: list[Orphan], signum: int) -> None:
    for orphan in orphans:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(orphan.pid, signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(orphan.pgid, signum)


def describe(orphans: list[Orphan]) -> str:
    """`pid 12 (python3 server.py 8001), pid 13 (caddy run ...)`."""
    return ", ".join(str(o) for o in orphans)
