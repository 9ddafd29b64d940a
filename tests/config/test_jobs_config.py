"""`jobs:` in conveyor.yml: what is accepted, and the error (with its key path) otherwise."""

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
  production: {listen: "127.0.0.1:8090"}
databases:
  main: {url: "sqlite:///main.db"}
jobs:
"""


def load(tmp_path: Path, jobs: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "conveyor.yml"
    path.write_text(BASE + textwrap.indent(textwrap.dedent(jobs), "  "), encoding="utf-8")
    return load_config(path, environ={})


def issues_of(tmp_path: Path, jobs: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, jobs)
    return caught.value.issues


def test_a_command_and_a_backup_job(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        clear-sessions:
          schedule: "0 3 * * *"
          timezone: Europe/Paris
          service: web
          command: python manage.py clearsessions
          environments: [production]
          timeout: 10m
        nightly-backup: {schedule: "30 2 * * *", backup: main, keep: 7}
        """,
    ).config
    job = config.jobs["clear-sessions"]
    assert (job.timezone, job.timeout, job.service) == ("Europe/Paris", 600.0, "web")
    assert config.jobs["nightly-backup"].keep == 7
    assert config.jobs["nightly-backup"].timezone == "UTC"  # the default
    assert list(config.jobs_for("staging")) == ["nightly-backup"]
    assert list(config.jobs_for("production")) == ["clear-sessions", "nightly-backup"]


@pytest.mark.parametrize(
    ("job", "issue"),
    [
        (
            'x: {schedule: "61 3 * * *", service: web, command: "true"}',
            "jobs/x/schedule: invalid cron schedule '61 3 * * *': ",
        ),
        (
            'x: {schedule: "0 3 * *", service: web, command: "true"}',
            'jobs/x/schedule: expected a cron schedule of 5 fields, "minute hour day month '
            'weekday" like "0 3 * * *" (or 6, seconds first), got 4 fields',
        ),
        (
            'x: {schedule: "0 3 * * 0-6/2", service: web, command: "true"}',
            'jobs/x/schedule: weekdays "0-6/2": write a range with a step by name',
        ),
        (
            'x: {schedule: "0 3 * * *", service: web, command: "true", timezone: Mars/Base}',
            'jobs/x/timezone: expected a time zone like "Europe/Berlin" or "UTC", got "Mars/Base"',
        ),
        (
            'x: {schedule: "0 3 * * *", every: 1m, service: web, command: "true"}',
            'jobs/x: give schedule: (a cron line like "0 3 * * *") or every:, not both',
        ),
        ('x: {service: web, command: "true"}', "jobs/x: give schedule:"),
        (
            'x: {schedule: "0 3 * * *", command: "true"}',
            "jobs/x: a command needs service: (the service whose release runs it)",
        ),
        (
            'x: {schedule: "0 3 * * *", service: web}',
            "jobs/x: give command: (with service:) or backup: (a database), not both",
        ),
        (
            'x: {schedule: "0 3 * * *", service: web, command: "true", keep: 3}',
            "jobs/x/keep: keep: is for backup jobs",
        ),
        ('x: {every: 500ms, service: web, command: "true"}', "jobs/x/every: expected at least 1s"),
        (
            'x: {schedule: "0 3 * * *", service: web, command: "true", every_day: true}',
            "jobs/x/every_day: unknown key",
        ),
        ('Bad_Name: {schedule: "0 3 * * *", backup: main}', "jobs/Bad_Name: invalid job name"),
    ],
)
def test_bad_jobs_name_their_key(tmp_path: Path, job: str, issue: str) -> None:
    issues = issues_of(tmp_path, job + "\n")
    assert len(issues) == 1, issues
    assert issues[0].startswith(issue), issues


def test_unknown_service_database_and_environment(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """\
        a: {schedule: "0 3 * * *", service: worker, command: "true"}
        b: {schedule: "0 3 * * *", backup: orders, environments: [prod]}
        """,
    )
    assert issues == [
        'jobs/a/service: unknown service "worker" (services are: web)',
        'jobs/b/backup: unknown database "orders" (databases: main)',
        'jobs/b/environments: unknown environment "prod" (environments: production, staging)',
    ]
