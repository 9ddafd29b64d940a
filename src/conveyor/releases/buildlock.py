"""One build of a service at a time on this machine, and who is building it.

The lock is an `flock` on `<releases>/.build-<service>.lock`: the kernel drops
it when its holder exits, killed or not, so it is never stale. The holder
writes its pid, user and start time into the file, and a second build waits
its turn after saying whose build it waits for. Pruning takes the same lock
without waiting (a build may link its dependencies from an older release, or
reuse one): a service being built is pruned next time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from conveyor.paths import Paths


def lock_path(paths: Paths, service: str) -> Path:
    return paths.releases / f".build-{service}.lock"


@contextlib.contextmanager
def build_lock(
    paths: Paths, service: str, *, user: str, log: Callable[[str], None] = lambda _: None
) -> Iterator[None]:
    """Hold the build lock of `service`; when another build holds it, say so and wait."""
    path = lock_path(paths, service)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        if not _try_lock(handle):
            log(f"{service}: waiting for {describe_holder(_read_holder(handle), service)}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        _write_holder(handle, user)
        try:
            yield
        finally:
            handle.truncate(0)
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def try_build_lock(paths: Paths, service: str) -> Iterator[bool]:
    """Hold the build lock of `service` if nobody does (True), else hold nothing (False)."""
    path = lock_path(paths, service)
    if not path.parent.is_dir():
        yield True  # no release directory: nothing is being built
        return
    with path.open("a+") as handle:
        if not _try_lock(handle):
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def describe_holder(holder: dict[str, object] | None, service: str) -> str:
    """'the build of api by ann (pid 42, started 2026-12-06 10:00:00 UTC) to finish'."""
    if not holder:
        return f"another build of {service} to finish"
    details = [f"pid {holder.get('pid')}"]
    started = holder.get("started")
    if isinstance(started, str):
        with contextlib.suppress(ValueError):
            details.append(f"started {datetime.fromisoformat(started):%Y-%m-%d %H:%M:%S %Z}")
    return f"the build of {service} by {holder.get('user')} ({', '.join(details)}) to finish"


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_holder(handle: IO[str], user: str) -> None:
    handle.truncate(0)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    handle.write(json.dumps({"pid": os.getpid(), "user": user, "started": started}) + "\n")
    handle.flush()


def _read_holder(handle: IO[str]) -> dict[str, object] | None:
    """What the holder wrote (None if it has not written it yet, or it is unreadable)."""
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "null")
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None
