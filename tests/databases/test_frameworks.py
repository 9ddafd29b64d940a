"""Which migration tool a migrate command runs, what it says is pending, and the step that
asks it (with a runner standing in for the release's one-off commands)."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.config.models import MigrateConfig
from conveyor.databases.frameworks import (
    Alembic,
    Django,
    alembic_revisions,
    asks_pending,
    detect,
    django_plan,
)
from conveyor.engine.pending_migrations import EVENT, Pending, answers, ask_pending, django_sql
from conveyor.errors import MigrationError


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("python manage.py migrate --noinput", Django(("python", "manage.py"))),
        (
            [".venv/bin/python", "manage.py", "migrate", "--settings=site.prod", "--noinput"],
            Django((".venv/bin/python", "manage.py"), ("--settings=site.prod",)),
        ),
        (
            "python3 src/manage.py migrate --database replica --no-input",
            Django(("python3", "src/manage.py"), ("--database", "replica")),
        ),
        ("django-admin migrate", Django(("django-admin",))),
        (["/bin/sh", "-c", "python manage.py migrate"], Django(("python", "manage.py"))),
        ("alembic upgrade head", Alembic(("alembic",))),
        (
            ["python3", "-m", "alembic", "-c", "db/alembic.ini", "upgrade", "head"],
            Alembic(("python3", "-m", "alembic", "-c", "db/alembic.ini")),
        ),
        (
            ".venv/bin/alembic -x tenant=a upgrade heads",
            Alembic((".venv/bin/alembic", "-x", "tenant=a")),
        ),
        # What is pending depends on the target, or the line is more than one command:
        ("alembic upgrade +1", None),
        ("alembic upgrade head --sql", None),
        ("alembic current", None),
        ("cd app && python manage.py migrate", None),
        ("DJANGO_SETTINGS_MODULE=site.prod python manage.py migrate", None),
        ("python manage.py showmigrations", None),
        (["python3", "run_sql.py", "migrations"], None),
        ("python manage.py migrate 'unterminated", None),
    ],
)
def test_detect(command: str | list[str], expected: Django | Alembic | None) -> None:
    assert detect(command) == expected


def test_the_commands_derived_from_manage_py_migrate() -> None:
    tool = detect("python manage.py migrate --settings site.prod --noinput")
    assert isinstance(tool, Django)
    assert tool.check_argv() == [
        "python",
        "manage.py",
        "migrate",
        "--check",
        "--settings",
        "site.prod",
    ]
    assert tool.plan_argv() == [
        "python",
        "manage.py",
        "migrate",
        "--plan",
        "--settings",
        "site.prod",
    ]
    assert tool.sqlmigrate_argv("shop", "0002_x") == [
        "python",
        "manage.py",
        "sqlmigrate",
        "shop",
        "0002_x",
        "--settings",
        "site.prod",
    ]


def test_django_plan_lists_the_pending_migrations_in_order() -> None:
    output = (
        "Planned operations:\n"
        "contenttypes.0001_initial\n"
        "    Create model ContentType\n"
        "auth.0001_initial\n"
        "    Create model Permission\n"
        "shop.0002_item_name_index\n"
        "    Alter field name on item\n"
    )
    assert django_plan(output) == [
        ("contenttypes", "0001_initial"),
        ("auth", "0001_initial"),
        ("shop", "0002_item_name_index"),
    ]
    assert django_plan("Planned operations:\n  No planned migration operations.\n") == []


def test_alembic_revisions_ignores_the_log_lines() -> None:
    current = (
        "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n"
        "INFO  [alembic.runtime.migration] Will assume transactional DDL.\n"
        "0001\n"
    )
    assert alembic_revisions(current) == {"0001"}
    assert alembic_revisions("ae1027a6acf (head)\n27c6a30d7c24 (effective head)\n") == {
        "ae1027a6acf",
        "27c6a30d7c24",
    }
    assert (
        alembic_revisions("INFO  [alembic.runtime.migration] Context impl SQLiteImpl.\n") == set()
    )


def migrate(**settings: object) -> MigrateConfig:
    return MigrateConfig.model_validate({"database": "main", **settings})


def test_asks_pending_only_when_it_can() -> None:
    assert asks_pending(migrate(command="python manage.py migrate"))
    assert asks_pending(migrate(command="alembic upgrade head"))
    assert asks_pending(migrate(command="./migrate.sh", pending="./pending.sh"))
    assert not asks_pending(migrate(command="./migrate.sh"))  # cannot tell: always migrate
    assert not asks_pending(migrate(command="python manage.py migrate", pending=False))


class Runner:
    """Answers one-off commands from a table {argv joined by spaces: (exit code, output)}."""

    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        self.answers = answers
        self.ran: list[str] = []

    async def __call__(
        self, what: str, argv: list[str], accept: tuple[int, ...]
    ) -> tuple[int, str]:
        line = " ".join(argv)
        self.ran.append(line)
        code, output = self.answers[line]
        if code not in accept:
            raise MigrationError(f"{what} exited {code}")
        return code, output


PLAN = "Planned operations:\nshop.0002_a\n    Add field\nshop.0003_b\n    Alter field\n"


def test_django_with_nothing_pending_is_asked_once() -> None:
    run = Runner({"python manage.py migrate --check": (0, "")})
    found = asyncio.run(ask_pending(run, migrate(command="python manage.py migrate"), "web"))
    assert found == Pending(False, (), "Django's migrate --check")
    assert run.ran == ["python manage.py migrate --check"]


def test_django_with_pending_migrations_names_them() -> None:
    run = Runner(
        {
            "python manage.py migrate --check": (1, ""),
            "python manage.py migrate --plan": (0, PLAN),
        }
    )
    found = asyncio.run(ask_pending(run, migrate(command="python manage.py migrate"), "web"))
    assert found.pending and found.migrations == ("shop.0002_a", "shop.0003_b")


def test_a_failing_django_check_stops_the_step() -> None:
    run = Runner({"python manage.py migrate --check": (2, "Traceback ...")})
    with pytest.raises(MigrationError, match="exited 2"):
        asyncio.run(ask_pending(run, migrate(command="python manage.py migrate"), "web"))


def test_django_sql_is_sqlmigrate_of_each_pending_migration() -> None:
    run = Runner(
        {
            "python manage.py migrate --plan": (0, PLAN),
            "python manage.py sqlmigrate shop 0002_a": (0, "ALTER TABLE x ADD COLUMN y int;"),
            "python manage.py sqlmigrate shop 0003_b": (0, "CREATE INDEX i ON x (y);"),
        }
    )
    tool = detect("python manage.py migrate")
    assert isinstance(tool, Django)
    assert asyncio.run(django_sql(run, tool, "web")) == [
        ("shop.0002_a", "ALTER TABLE x ADD COLUMN y int;"),
        ("shop.0003_b", "CREATE INDEX i ON x (y);"),
    ]


@pytest.mark.parametrize(
    ("current", "heads", "pending"),
    [
        ("0002 (head)\n", "0002 (head)\n", False),
        ("0001\n", "0002 (head)\n", True),
        ("", "0001 (head)\n", True),
    ],
)
def test_alembic_compares_current_and_heads(current: str, heads: str, pending: bool) -> None:
    run = Runner({"alembic current": (0, current), "alembic heads": (0, heads)})
    found = asyncio.run(ask_pending(run, migrate(command="alembic upgrade head"), "api"))
    assert found.pending is pending


@pytest.mark.parametrize(("code", "pending"), [(0, False), (1, True)])
def test_the_pending_command_answers_by_its_exit_status(code: int, pending: bool) -> None:
    run = Runner({"/bin/sh -c ./pending.sh": (code, "")})
    config = migrate(command="./migrate.sh", pending="./pending.sh")
    assert asyncio.run(ask_pending(run, config, "api")).pending is pending


def test_another_exit_status_of_the_pending_command_is_an_error() -> None:
    run = Runner({"/bin/sh -c ./pending.sh": (3, "")})
    config = migrate(command="./migrate.sh", pending="./pending.sh")
    with pytest.raises(MigrationError):
        asyncio.run(ask_pending(run, config, "api"))


def test_the_newest_answer_of_a_deployment_counts() -> None:
    events = [
        (EVENT, {"service": "api", "database": "main", "pending": False}),  # newest
        ("breaking_migration", {}),
        (EVENT, {"service": "api", "database": "main", "pending": True}),
        (EVENT, {"service": "jobs", "database": "main", "pending": True}),
    ]
    assert answers(events) == {("api", "main"): False, ("jobs", "main"): True}
