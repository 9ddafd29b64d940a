"""A Conveyor home per test, with a real supervisord that is shut down after it."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.paths import Paths
from conveyor.targets.base import InstanceSpec
from conveyor.targets.local import LocalTarget
from conveyor.targets.supervisor import Supervisor

PY = sys.executable


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line contains `text` (zombies excluded)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def paths(tmp_path: Path) -> Iterator[Paths]:
    """A fresh home; afterwards supervisord is shut down and nothing of it survives."""
    home = Paths(tmp_path / "home").ensure()
    try:
        yield home
    finally:
        Supervisor(home).shutdown(timeout=30)
        leftovers = wait_until_gone(str(tmp_path))
        if str(home.run_dir).startswith("/tmp/conveyor-"):
            shutil.rmtree(home.run_dir, ignore_errors=True)
        assert not leftovers, f"processes left behind: {leftovers}"


def wait_until_gone(text: str, timeout: float = 3.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def supervisor(paths: Paths) -> Supervisor:
    return Supervisor(paths)


@pytest.fixture
def target(supervisor: Supervisor, paths: Paths) -> LocalTarget:
    return LocalTarget(supervisor, paths)


@pytest.fixture
def script(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a Python script into tmp_path and return its path."""

    def write(name: str, body: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    return write


@pytest.fixture
def make_spec(paths: Paths, tmp_path: Path) -> Callable[..., InstanceSpec]:
    def make(
        name: str,
        command: list[str],
        env: dict[str, str] | None = None,
        stop_timeout: float = 5.0,
        port: int = 0,
    ) -> InstanceSpec:
        return InstanceSpec(
            name=name,
            environment="test",
            service="web",
            release_id="r1",
            release_dir=tmp_path,
            command=command,
            env=env or {},
            port=port,
            stop_timeout=stop_timeout,
            log_path=paths.instance_logs / f"{name}.log",
        )

    return make
