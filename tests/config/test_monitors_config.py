"""`monitors:` of an environment: what is accepted, and the error (with its key path)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.errors import ConfigError

BASE = """\
project: shop
services:
  web: {run: x}
environments:
  staging: {listen: "127.0.0.1:8080"}
  production:
    listen: "127.0.0.1:8090"
    monitors:
"""


def load(tmp_path: Path, monitors: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "conveyor.yml"
    text = BASE + textwrap.indent(textwrap.dedent(monitors), "      ")
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


def issues_of(tmp_path: Path, monitors: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, monitors)
    return caught.value.issues


def test_rules_and_probes_of_the_seed_documents(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        interval: 15s
        rules:
          errors: {alert: "error_rate > 5% for 5m", on_fire: rollback}
          slow: {alert: "p95 > 2s for 5m", service: web, window: 2m}
          queue:
            alert: "queue_depth > 100 for 10m"
            prometheus: {url: "http://127.0.0.1:9090", query: "sum(queue_depth)"}
        probes:
          home: {path: /, expect_status: 200, interval: 1m, for: 2m}
          each: {type: tcp, against: instances}
          checkout: {type: command, command: ./check-checkout.sh}
        """,
    ).config
    monitors = config.environments["production"].monitors
    assert config.environments["staging"].monitors is None
    assert monitors.interval == 15.0
    errors = monitors.rules["errors"]
    assert (errors.on_fire, errors.window, errors.min_requests) == ("rollback", 60.0, 10)
    assert str(errors.expression()) == "error_rate > 5% for 5m"
    assert monitors.rules["slow"].expression().threshold.value == 2000.0
    assert monitors.rules["queue"].expression().custom
    assert monitors.rules["queue"].source_dict() is not None
    home = monitors.probes["home"]
    assert (home.for_, home.interval, home.against) == (120.0, 60.0, "url")
    assert monitors.probes["each"].type == "tcp"


@pytest.mark.parametrize(
    ("monitors", "expected"),
    [
        (
            'rules: {errors: {alert: "eror_rate > 5%"}}',
            'environments/production/monitors/rules/errors/alert: "eror_rate" is not a metric '
            "of the router",
        ),
        (
            'rules: {errors: {alert: "error_rate > 5 for 5m"}}',
            'environments/production/monitors/rules/errors/alert: threshold "error_rate > 5": '
            'expected a percentage like "1%"',
        ),
        (
            'rules: {errors: {alert: "error_rate > 5% for soon"}}',
            'environments/production/monitors/rules/errors/alert: after "for": expected a duration',
        ),
        (
            'rules: {errors: {alert: "error_rate > 5%", command: "echo 1"}}',
            "environments/production/monitors/rules/errors: error_rate is read from the router",
        ),
        (
            'rules: {errors: {alert: "error_rate > 5%", service: wbe}}',
            'environments/production/monitors/rules/errors/service: unknown service "wbe"',
        ),
        (
            'rules: {errors: {alert: "error_rate > 5%", on_fire: page}}',
            "environments/production/monitors/rules/errors/on_fire:",
        ),
        (
            "probes: {home: {type: command}}",
            "environments/production/monitors/probes/home/command: a command probe needs",
        ),
        (
            "probes: {home: {interval: 100ms}}",
            "environments/production/monitors/probes/home/interval: expected at least 1s",
        ),
        (
            "probes: {home: {path: health}}",
            "environments/production/monitors/probes/home/path: expected a path starting",
        ),
        (
            'rules: {home: {alert: "p95 > 2s"}}\nprobes: {home: {}}',
            'environments/production/monitors: "home" names a rule and a probe',
        ),
        (
            "rules: {errors: {alert: error_rate > 5%, windw: 1m}}",
            "environments/production/monitors/rules/errors",
        ),
    ],
)
def test_errors_name_the_key_path(tmp_path: Path, monitors: str, expected: str) -> None:
    issues = issues_of(tmp_path, monitors)
    assert any(issue.startswith(expected) for issue in issues), issues
