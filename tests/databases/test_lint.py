"""Migration safety on the SQL that real tools print: Alembic's `--sql` and Django's sqlmigrate.

Each case writes one migration, has the real tool print its SQL for the
engine (Alembic offline for PostgreSQL, MySQL and SQLite; Django's
`sqlmigrate` against PostgreSQL and SQLite), and checks which rules fire.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conveyor.databases.lint import describe_findings, lint_sql
from conveyor.errors import MigrationError

ALEMBIC_ENV = """
from alembic import context
context.configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True)
with context.begin_transaction():
    context.run_migrations()
"""

BASE = """
op.create_table("users", sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("email", sa.String(200)), sa.Column("name", sa.String(100)),
                sa.Column("age", sa.Integer))
"""

URLS = {
    "postgresql": "postgresql://u@localhost/db",
    "mysql": "mysql+pymysql://u@localhost/db",
    "sqlite": "sqlite:///db.sqlite3",
}


def alembic_sql(tmp_path: Path, engine: str, upgrade: str) -> str:
    """What `alembic upgrade head --sql` prints for a second migration doing `upgrade`."""
    from alembic import command
    from alembic.config import Config

    scripts = tmp_path / "alembic"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "env.py").write_text(ALEMBIC_ENV)
    (scripts / "script.py.mako").write_text("")
    for rev, down, body in (("0001", None, BASE), ("0002", "0001", upgrade)):
        (scripts / "versions" / f"{rev}.py").write_text(
            "import sqlalchemy as sa\nfrom alembic import op\n"
            f"revision = {rev!r}\ndown_revision = {down!r}\n"
            "branch_labels = None\ndepends_on = None\n"
            f"def upgrade():\n{textwrap.indent(textwrap.dedent(body).strip(), '    ')}\n"
            "def downgrade():\n    pass\n"
        )
    out = io.StringIO()
    config = Config(stdout=out)
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("sqlalchemy.url", URLS[engine])
    config.output_buffer = out
    command.upgrade(config, "0001:0002", sql=True)
    return out.getvalue()


ALEMBIC_CASES = [
    ("drop column", 'op.drop_column("users", "email")', {"drop-column"}),
    # MySQL's CHANGE/MODIFY restate the whole column: Alembic needs existing_type
    (
        "rename column",
        'op.alter_column("users", "name", new_column_name="full_name", existing_type=sa.String(100))',
        {"rename-column"},
    ),
    (
        "type change",
        'op.alter_column("users", "age", type_=sa.BigInteger, existing_type=sa.Integer)',
        {"alter-column-type"},
    ),
    (
        "set not null",
        'op.alter_column("users", "age", nullable=False, existing_type=sa.Integer)',
        {"set-not-null"},
    ),
    (
        "add not null column",
        'op.add_column("users", sa.Column("score", sa.Integer, nullable=False))',
        {"add-column-not-null"},
    ),
    (
        "add not null column with a default",
        'op.add_column("users", sa.Column("score", sa.Integer, nullable=False, server_default="0"))',
        set(),
    ),
    ("add nullable column", 'op.add_column("users", sa.Column("bio", sa.Text))', set()),
    (
        "unique constraint",
        'op.create_unique_constraint("uq_email", "users", ["email"])',
        {"add-unique"},
    ),
    ("drop table", 'op.drop_table("users")', {"drop-table"}),
    ("rename table", 'op.rename_table("users", "people")', {"rename-table"}),
    (
        "new table and its index",
        'op.create_table("orders", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.create_index("ix_orders_id", "orders", ["id"])\n'
        'op.drop_column("orders", "id")',
        set(),
    ),
]
INDEX_CASES = [
    ("index", 'op.create_index("ix_email", "users", ["email"])', "create-index-blocking"),
    (
        "index concurrently",
        "with op.get_context().autocommit_block():\n"
        '    op.create_index("ix_email", "users", ["email"], postgresql_concurrently=True)',
        None,
    ),
    ("unique index", 'op.create_index("ux_email", "users", ["email"], unique=True)', "add-unique"),
]


def _alembic_params() -> list[Any]:
    params = []
    for engine in ("postgresql", "mysql", "sqlite"):
        for name, upgrade, rules in ALEMBIC_CASES:
            # SQLite cannot ALTER a column or a constraint: Alembic rebuilds the table in
            # batch mode there (test_a_sqlite_table_rebuild_is_one_finding_on_the_rename).
            if engine == "sqlite" and ("alter_column" in upgrade or "constraint" in upgrade):
                continue
            params.append(pytest.param(engine, upgrade, rules, id=f"{name}-{engine}"))
    return params


@pytest.mark.parametrize(("engine", "upgrade", "rules"), _alembic_params())
def test_alembic_migrations(tmp_path: Path, engine: str, upgrade: str, rules: set[str]) -> None:
    sql = alembic_sql(tmp_path, engine, upgrade)
    found = lint_sql(sql, engine)
    if engine == "mysql" and rules == {"set-not-null"}:
        rules = {"alter-column-type"}  # MODIFY restates the column: reported as a redefinition
    assert {f.rule for f in found} == rules, sql
    for finding in found:
        assert finding.statement in sql.replace("\n", " ") or finding.statement in sql
        assert finding.table.endswith(("users", "people"))


@pytest.mark.parametrize(
    ("upgrade", "postgres_rule"), [pytest.param(u, r, id=n) for n, u, r in INDEX_CASES]
)
def test_alembic_indexes(tmp_path: Path, upgrade: str, postgres_rule: str | None) -> None:
    pg = lint_sql(alembic_sql(tmp_path / "pg", "postgresql", upgrade), "postgresql")
    assert [f.rule for f in pg] == ([postgres_rule] if postgres_rule else [])
    my = lint_sql(alembic_sql(tmp_path / "my", "mysql", upgrade), "mysql")
    # MySQL builds indexes online; only a unique one changes what the old code may write.
    assert [f.rule for f in my] == (["add-unique"] if postgres_rule == "add-unique" else [])


def test_the_finding_names_the_line_statement_and_expand_contract_step(tmp_path: Path) -> None:
    sql = alembic_sql(tmp_path, "postgresql", 'op.drop_column("users", "email")')
    (finding,) = lint_sql(sql, "postgresql")
    line = sql.splitlines()[finding.line - 1]
    assert line.startswith("ALTER TABLE users DROP COLUMN email")
    text = describe_findings([finding])
    assert f"line {finding.line}: ALTER TABLE users DROP COLUMN email" in text
    assert "the running release still reads or writes it" in text
    assert "later release" in text


DJANGO_SETTINGS = """
SECRET_KEY = "test"
INSTALLED_APPS = ["shop"]
DATABASES = {"default": DATABASE}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
"""
DJANGO_INITIAL = """
from django.db import migrations, models

class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel("Customer", [
            ("id", models.AutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
            ("email", models.CharField(max_length=200)),
            ("age", models.IntegerField(null=True)),
        ]),
    ]
"""
DJANGO_CASES = [
    (
        "add field with a default",
        'migrations.AddField("customer", "score", models.IntegerField(default=0))',
        {"add-column-not-null"},
    ),
    (
        "add nullable field",
        'migrations.AddField("customer", "bio", models.TextField(null=True))',
        set(),
    ),
    ("remove field", 'migrations.RemoveField("customer", "email")', {"drop-column"}),
    ("rename field", 'migrations.RenameField("customer", "name", "full_name")', {"rename-column"}),
    (
        "alter field type",
        'migrations.AlterField("customer", "age", models.BigIntegerField(null=True))',
        {"alter-column-type"},
    ),
    (
        "alter field not null",
        'migrations.AlterField("customer", "age", models.IntegerField())',
        {"set-not-null"},
    ),
    (
        "add index",
        'migrations.AddIndex("customer", models.Index(fields=["email"], name="ix_email"))',
        {"create-index-blocking"},
    ),
    (
        "new model",
        'migrations.CreateModel("Order", [("id", models.AutoField(primary_key=True)), '
        '("customer", models.ForeignKey("shop.customer", on_delete=models.CASCADE))])',
        set(),
    ),
]


def django_sql(tmp_path: Path, database: str, operation: str) -> str:
    """What `manage.py sqlmigrate shop 0002` prints for a migration doing `operation`."""
    app = tmp_path / "shop"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "migrations" / "0001_initial.py").write_text(DJANGO_INITIAL)
    (app / "migrations" / "0002_change.py").write_text(
        "from django.db import migrations, models\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("shop", "0001_initial")]\n'
        f"    operations = [{operation}]\n"
    )
    (tmp_path / "settings.py").write_text(f"DATABASE = {database}\n" + DJANGO_SETTINGS)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django.core.management as m; "
            "m.execute_from_command_line(['manage.py', 'sqlmigrate', 'shop', '0002'])",
        ],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "settings",
            "PYTHONPATH": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


@pytest.mark.parametrize(
    ("operation", "rules"), [pytest.param(o, r, id=n) for n, o, r in DJANGO_CASES]
)
def test_django_migrations_on_postgresql(tmp_path: Path, operation: str, rules: set[str]) -> None:
    pytest.importorskip("django")
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres connect_timeout=3").close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL does not answer: {exc}")
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    }
    sql = django_sql(tmp_path, repr(database), operation)
    assert {f.rule for f in lint_sql(sql, "postgresql")} == rules, sql


# On SQLite Django rebuilds the table for most changes (a new table, a copy, DROP TABLE, a
# rename back): one rebuild-table finding; SQLite has no concurrent index builds to ask for.
SQLITE_RULES = {
    "add field with a default": {"rebuild-table"},
    "alter field type": {"rebuild-table"},
    "alter field not null": {"rebuild-table"},
    "remove field": {"drop-column"},
    "add index": set(),
}


@pytest.mark.parametrize(
    ("name", "operation", "rules"), DJANGO_CASES, ids=[c[0] for c in DJANGO_CASES]
)
def test_django_migrations_on_sqlite(
    tmp_path: Path, name: str, operation: str, rules: set[str]
) -> None:
    pytest.importorskip("django")
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    sql = django_sql(tmp_path, repr(database), operation)
    assert {f.rule for f in lint_sql(sql, "sqlite")} == SQLITE_RULES.get(name, rules), sql


def test_a_sqlite_table_rebuild_is_one_finding_on_the_rename(tmp_path: Path) -> None:
    pytest.importorskip("django")
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    sql = django_sql(
        tmp_path, repr(database), 'migrations.AlterField("customer", "age", models.IntegerField())'
    )
    (finding,) = lint_sql(sql, "sqlite")
    assert finding.rule == "rebuild-table" and finding.table == "new__shop_customer"
    assert finding.statement.startswith('ALTER TABLE "new__shop_customer" RENAME TO')
    assert "rebuilds table shop_customer" in finding.problem


def test_sql_that_does_not_parse_is_an_error_with_its_line() -> None:
    with pytest.raises(MigrationError, match="does not parse as PostgreSQL at line 2"):
        lint_sql("SELECT 1;\nALTER TABLE users DROP COLUM email;", "postgresql")
    with pytest.raises(MigrationError, match="does not parse as mysql at line 2"):
        lint_sql("SELECT 1;\nSELECT * FROM WHERE;", "mysql")


def test_ddl_the_parser_only_keeps_as_text_is_flagged_as_unchecked() -> None:
    (finding,) = lint_sql("SELECT 1;\nALTER TABLE users DROP ((email;", "mysql")
    assert finding.rule == "unchecked" and finding.line == 2
    assert "--allow-breaking-migrations" in finding.advice
