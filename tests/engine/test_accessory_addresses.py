"""The address of an accessory that never started: known from its `port:` (the checks a
first deploy runs in the release come before the accessory's start), else an error that
says how to get one."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.engine import accessories
from conveyor.engine.runtime import Runtime
from conveyor.errors import TargetError

CONFIG = """
project: acc
accessories:
  redis: {run: [redis-server, --port, $PORT], port: 6395, url: "redis://{host}:{port}/0"}
  search: {run: [search-server, --port, $PORT]}
services:
  web: {run: [python3, app.py]}
environments:
  staging: {listen: "127.0.0.1:18112"}
"""


@pytest.fixture
def rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    return Runtime.open(load_config(tmp_path / "conveyor.yml"), "tester")


def test_a_fixed_port_gives_the_address_before_the_first_start(rt: Runtime) -> None:
    found = accessories.referenced(rt, "staging", ["${accessories.redis.url}"])
    assert found["redis"].url == "redis://127.0.0.1:6395/0"
    assert (found["redis"].host, found["redis"].port) == ("127.0.0.1", 6395)


def test_a_port_chosen_at_the_start_is_not_known_before_it(rt: Runtime) -> None:
    with pytest.raises(TargetError) as raised:
        accessories.referenced(rt, "staging", ["${accessories.search.url}"])
    assert "accessory search of staging has never started" in str(raised.value)
    assert "give it a port:" in (raised.value.hint or "")
