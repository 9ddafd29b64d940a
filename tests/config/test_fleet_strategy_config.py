"""`strategy.batch` and `parallel:`: the settings of deploys across hosts, checked with
their key paths when conveyor.yml is read."""

from __future__ import annotations

import textwrap

import pytest

from conveyor.config.loader import parse_config
from conveyor.errors import ConfigError

BASE = """\
project: fleet
services:
  web: {run: "serve $PORT"}
environments:
"""
SSH = "target: ssh, hosts: [{name: a, address: 10.0.0.1, user: u}]"


def problems(environment: str) -> list[str]:
    text = BASE + textwrap.indent(textwrap.dedent(environment), "  ")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {})
    return caught.value.issues


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (
            "prod: {listen: ':80', strategy: {type: rolling, batch: 1}}",
            "environments/prod/strategy/batch: batches are of hosts, and only `target: ssh` "
            'runs on hosts (this environment\'s target is "local"); use '
            "max_surge/max_unavailable instead",
        ),
        (
            f"prod: {{listen: ':80', {SSH}, strategy: {{batch: 1, max_surge: 2}}}}",
            "environments/prod/strategy/batch: batch and max_surge conflict: with batch, all "
            "the instances of a batch's hosts start beside the old ones; remove max_surge "
            "(or batch)",
        ),
        (
            f"prod: {{listen: ':80', {SSH}, strategy: {{batch: 50%, max_unavailable: 1}}}}",
            "environments/prod/strategy/batch: batch and max_unavailable conflict: a batch "
            "stops its old instances only once its new ones serve, so none is ever "
            "unavailable; remove max_unavailable (or batch)",
        ),
        (
            f"prod: {{listen: ':80', {SSH}, strategy: {{type: recreate, batch: 1}}}}",
            "environments/prod/strategy/batch: only the rolling strategy replaces hosts in "
            "batches, not recreate",
        ),
        (
            "prod: {listen: ':80', parallel: 4}",
            "environments/prod/parallel: only `target: ssh` acts on several hosts (this "
            'environment\'s target is "local"); remove `parallel:`',
        ),
    ],
)
def test_batch_and_parallel_are_checked_against_the_target_and_each_other(
    environment: str, expected: str
) -> None:
    assert expected in problems(environment)


@pytest.mark.parametrize("value", ["0", "0%", "101%", "-1", "x", "1.5", "true"])
def test_a_batch_is_one_host_or_more_or_a_share_up_to_all(value: str) -> None:
    (issue,) = problems(f"prod: {{listen: ':80', {SSH}, strategy: {{batch: {value}}}}}")
    assert issue.startswith("environments/prod/strategy/batch: expected a number of hosts")
    assert "1% to 100%" in issue


@pytest.mark.parametrize("value", ["0", "-2", "x"])
def test_parallel_is_a_positive_count(value: str) -> None:
    (issue,) = problems(f"prod: {{listen: ':80', {SSH}, parallel: {value}}}")
    assert issue.startswith("environments/prod/parallel: expected an integer")


def test_batches_and_parallel_on_an_ssh_environment() -> None:
    text = BASE + textwrap.indent(
        f"prod: {{listen: ':80', {SSH}, parallel: 3, strategy: {{batch: 25%, "
        "max_unavailable: 0}}\n"
        f"one: {{listen: ':81', {SSH.replace('10.0.0.1', '10.0.0.2')}, strategy: "
        "{type: rolling, batch: 2}}\n",
        "  ",
    )
    config = parse_config(text, {})
    prod = config.environments["prod"]
    assert prod.parallel == 3
    assert prod.strategy.batch == "25%"  # type: ignore[union-attr]
    assert config.environments["one"].strategy.batch == 2  # type: ignore[union-attr]
    assert config.environments["one"].parallel == 8  # the default
