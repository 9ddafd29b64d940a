"""Service settings resolved once, at plan time, and plans journaled before they existed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from conveyor.config import load_config
from conveyor.engine.plan import (
    DrainInstances,
    InstanceSettings,
    MarkCurrent,
    StartInstances,
    StopInstances,
    WaitHealthy,
    steps_from_json,
    steps_to_json,
)
from conveyor.engine.settings import with_settings

CONFIG = textwrap.dedent(
    """
    project: demo
    services:
      api:
        run: "serve --port $PORT"
        health: {type: http, path: /up}
        stop_timeout: 7s
        drain_timeout: 3s
        deploy_timeout: 40s
    environments:
      staging:
        listen: "127.0.0.1:18080"
        strategy: {type: rolling, min_ready: 2s}
    """
)

# A plan as a Conveyor from before hosts and settings journaled it.
OLD_PLAN = [
    {"kind": "start", "service": "api", "phase": "forward", "release": "r2", "instances": ["a"]},
    {"kind": "wait_healthy", "service": "api", "phase": "forward", "instances": ["a"],
     "recheck": False},
    {"kind": "set_weights", "service": "api", "phase": "forward", "weights": [["a", 1]]},
    {"kind": "drain", "service": "api", "phase": "forward", "instances": ["old"]},
    {"kind": "stop", "service": "api", "phase": "forward", "instances": ["old"]},
    {"kind": "mark_current", "service": "api", "phase": "forward", "release": "r2"},
]  # fmt: skip


def test_instance_steps_carry_the_environment_s_settings(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    config = load_config(tmp_path / "conveyor.yml", environ={}).config
    steps = with_settings(config, "staging", steps_from_json(OLD_PLAN))
    start, wait, _, drain, stop, mark = steps
    assert isinstance(start, StartInstances) and start.settings is not None
    expected = InstanceSettings(
        health=start.settings.health,
        deploy_timeout=40.0,
        stop_timeout=7.0,
        drain_timeout=3.0,
        min_ready=2.0,  # the environment strategy's
    )
    assert (start.settings.health["type"], start.settings.health["path"]) == ("http", "/up")
    assert start.settings == expected
    assert isinstance(wait, WaitHealthy) and wait.settings == expected
    assert isinstance(drain, DrainInstances) and drain.settings == expected
    assert isinstance(stop, StopInstances) and stop.settings == expected
    assert isinstance(mark, MarkCurrent)
    # An old plan's start has no hosts: the target's first host.
    assert start.placed(("local",)) == [("a", "local")]


def test_resolved_plans_survive_the_journal(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    config = load_config(tmp_path / "conveyor.yml", environ={}).config
    steps = with_settings(config, "staging", steps_from_json(OLD_PLAN))
    journaled = json.loads(json.dumps(steps_to_json(steps)))
    assert steps_from_json(journaled) == steps
    # Settings already in a plan are kept, not resolved again from a changed config.
    changed = config.model_copy(deep=True)
    changed.services["api"].drain_timeout = 99.0
    again = with_settings(changed, "staging", steps_from_json(journaled))
    assert again == steps
    assert "serve" not in json.dumps(journaled)  # the command line is resolved at start
