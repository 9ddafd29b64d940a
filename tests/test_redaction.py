"""Secrets out of recorded command lines: `env_secrets` and `redact_argv`."""

from __future__ import annotations

import pytest

from conveyor.redaction import env_secrets, redact_argv


def test_env_secrets_by_name_and_url_password() -> None:
    env = {
        "DJANGO_SECRET_KEY": "k" * 20,
        "STRIPE_API_KEY": "sk_live_1",
        "DATABASE_URL": "postgresql://app:db%40pw@db/app",
        "REDIS_URL": "redis://cache:6379/0",
        "DEBUG": "0",
        "EMPTY_TOKEN": "",
    }
    assert env_secrets(env) == ["k" * 20, "sk_live_1", "db%40pw", "db@pw"]


@pytest.mark.parametrize(
    ("argv", "recorded"),
    [
        (["python", "manage.py", "createsuperuser"], ["python", "manage.py", "createsuperuser"]),
        (["flask", "--app", "flaskr", "init-db"], ["flask", "--app", "flaskr", "init-db"]),
        (["sh", "-c", "curl -H 'X: s3cr3t'"], ["sh", "-c", "curl -H 'X: ***'"]),
        (
            ["psql", "--password", "pw", "-c", "select 1"],
            ["psql", "--password", "***", "-c", "select 1"],
        ),
        (["tool", "--api-key=abc", "--user=ann"], ["tool", "--api-key=***", "--user=ann"]),
        (["env", "DB_PASSWORD=x1", "LANG=C", "cmd"], ["env", "DB_PASSWORD=***", "LANG=C", "cmd"]),
        (["psql", "postgresql://u:pw@db/x"], ["psql", "postgresql://u:***@db/x"]),
        (["echo", "s3cr3t-and-more"], ["echo", "***-and-more"]),
        (["echo", "ab"], ["echo", "ab"]),  # too short to be masked
    ],
)
def test_redact_argv(argv: list[str], recorded: list[str]) -> None:
    assert redact_argv(argv, ["s3cr3t", "ab"]) == recorded
