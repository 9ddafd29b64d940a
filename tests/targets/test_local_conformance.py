"""The target conformance suite (conformance.py) against the local target and a real
supervisord."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conveyor.paths import Paths
from conveyor.targets.local import LocalTarget
from conveyor.targets.supervisor import Supervisor
from tests.targets.conformance import *  # noqa: F403  (the tests and their fixtures)
from tests.targets.conformance import APP

T = TypeVar("T")


class LocalHarness:
    host = "local"

    def __init__(self, paths: Paths) -> None:
        self.target = LocalTarget(Supervisor(paths), paths)
        self.release_dir = paths.release_dir("web", "r1")
        self.release_dir.mkdir(parents=True)
        (self.release_dir / "app.py").write_text(APP)
        self._loop = asyncio.new_event_loop()

    def log_path(self, name: str) -> Path:
        return self.target.log_path_for(name)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        self._loop.close()


@pytest.fixture
def harness(paths: Paths) -> Iterator[LocalHarness]:
    made = LocalHarness(paths)
    yield made
    made.close()
