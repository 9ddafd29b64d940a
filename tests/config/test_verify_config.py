"""`verify:` in conveyor.yml: what it takes, and the errors (with their key paths) it gives."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.errors import ConfigError

HEAD = """\
project: shop
services:
  api: {run: x, route: {path: /api}}
analysis:
  errors: {interval: 1s, duration: 10s, thresholds: ["error_rate < 1%"]}
environments:
  production:
    listen: 127.0.0.1:8090
"""


def write(tmp_path: Path, verify: str) -> Path:
    path = tmp_path / "conveyor.yml"
    body = textwrap.indent(textwrap.dedent(verify), "      ")
    path.write_text(HEAD + "    verify:\n" + body, encoding="utf-8")
    return path


def issues_of(tmp_path: Path, verify: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, verify), environ={})
    return caught.value.issues


def test_smoke_tests_and_an_analysis_for_a_bake_time(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
              bake: 2m
              interval: 10s
              smoke:
                - {name: orders, path: /api/orders, expect_status: 200}
                - {command: "python3 check.py", timeout: 1m}
              analysis: errors
            """,
        ),
        environ={},
    )
    verify = config.config.environments["production"].verify
    assert verify is not None
    assert (verify.bake, verify.interval, verify.analysis) == (120.0, 10.0, "errors")
    assert [t.describe() for t in verify.smoke] == ["orders", "command python3 check.py"]
    assert verify.smoke[1].timeout == 60.0


def test_the_interval_defaults_to_5s_and_one_kind_of_check_is_enough(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "bake: 30s\nanalysis: errors\n"), environ={})
    verify = config.config.environments["production"].verify
    assert verify is not None and verify.interval == 5.0 and verify.smoke == []


@pytest.mark.parametrize(
    ("verify", "issue"),
    [
        (
            "bake: 2m\n",
            "environments/production/verify: a bake needs something to check: smoke tests "
            "(smoke: [{path: /}]), an analysis (analysis: NAME), or both",
        ),
        (
            "bake: 2m\nanalysis: erors\n",
            'environments/production/verify/analysis: unknown analysis "erors" (analyses: errors)',
        ),
        (
            "bake: soon\nanalysis: errors\n",
            'environments/production/verify/bake: expected a duration like "5s", got "soon"',
        ),
        (
            "bake: 0s\nanalysis: errors\n",
            'environments/production/verify/bake: expected a duration above 0s, like "2m"',
        ),
        (
            "bake: 10s\ninterval: 0s\nanalysis: errors\n",
            'environments/production/verify/interval: expected a duration above 0s, like "5s"',
        ),
        (
            "bake: 10s\ninterval: 1m\nanalysis: errors\n",
            "environments/production/verify/interval: interval (1m) is longer than the bake "
            "(10s): the smoke tests would run once at most",
        ),
        (
            "analysis: errors\n",
            "environments/production/verify/bake: required",
        ),
        (
            "bake: 1m\nsmoke: [{path: orders}]\n",
            'environments/production/verify/smoke/0/path: expected a path starting with "/", '
            'got "orders"',
        ),
        (
            "bake: 1m\nanalysis: errors\nbaek: 2m\n",
            "environments/production/verify/baek",
        ),
    ],
    ids=[
        "nothing-to-check",
        "unknown-analysis",
        "bad-duration",
        "zero-bake",
        "zero-interval",
        "interval-over-bake",
        "no-bake",
        "relative-path",
        "unknown-key",
    ],
)
def test_errors_name_their_key_path(tmp_path: Path, verify: str, issue: str) -> None:
    issues = issues_of(tmp_path, verify)
    assert len(issues) == 1, issues
    assert issues[0].startswith(issue), issues
