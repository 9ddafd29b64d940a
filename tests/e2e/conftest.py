from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases.conftest import live as live  # a real database of each engine
from tests.support.project import Project, make_project
from tests.support.receiver import Receiver, receiver


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Project]:
    project = make_project(tmp_path)
    try:
        yield project
    finally:
        project.shutdown()


@pytest.fixture
def http() -> Iterator[Receiver]:
    """A local HTTP server that records what webhook and GitHub targets send it."""
    with receiver() as server:
        yield server
