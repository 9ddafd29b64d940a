"""The migration check's settings: small tables for rules about locks, allowed findings,
findings that name their migration, and the config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.config.lint import LINT_RULES, LintAllow, LintSettings
from conveyor.databases.lint import ADVICE, Finding, excuse, lint_parts, lint_sql
from conveyor.errors import ConfigError

INDEX = "CREATE INDEX orders_day ON orders (day);"


def findings(sql: str) -> list[Finding]:
    return lint_sql(sql, "postgresql")


def test_the_config_knows_every_rule() -> None:
    assert set(LINT_RULES) == set(ADVICE)


def test_an_index_on_a_small_table_is_let_through_and_says_why() -> None:
    kept, excused = excuse(findings(INDEX), LintSettings(), {"orders": 300})
    assert kept == []
    assert excused[0].describe() == (
        "line 1: create-index-blocking on orders not flagged: orders has 300 rows, fewer than "
        "databases.main.lint.small_table_rows (10000)"
    )


@pytest.mark.parametrize(
    ("rows", "threshold", "flagged"),
    [
        ({"orders": 10_000}, 10_000, True),  # at the threshold: large
        ({"orders": 9_999}, 10_000, False),
        ({}, 10_000, True),  # the database could not tell: large
        ({"orders": 5}, 0, True),  # 0 flags every table
        ({"orders": 5000}, 1000, True),
    ],
)
def test_table_size_against_small_table_rows(
    rows: dict[str, int], threshold: int, flagged: bool
) -> None:
    kept, _ = excuse(findings(INDEX), LintSettings(small_table_rows=threshold), rows)
    assert bool(kept) is flagged


def test_size_does_not_excuse_what_breaks_the_running_release() -> None:
    sql = "ALTER TABLE orders DROP COLUMN note; CREATE UNIQUE INDEX u ON orders (ref);"
    kept, excused = excuse(findings(sql), LintSettings(), {"orders": 3})
    assert [f.rule for f in kept] == ["drop-column", "add-unique"]
    assert excused == []


def test_an_allow_entry_covers_its_rule_on_its_table_only() -> None:
    sql = INDEX + "\nCREATE INDEX users_name ON users (name);\nALTER TABLE orders DROP COLUMN x;"
    settings = LintSettings(allow=[LintAllow(rule="create-index-blocking", table="public.orders")])
    kept, excused = excuse(findings(sql), settings, {}, database="shop")
    assert [(f.rule, f.table) for f in kept] == [
        ("create-index-blocking", "users"),
        ("drop-column", "orders"),
    ]
    assert [e.reason for e in excused] == ["allowed by databases.shop.lint.allow"]


def test_lint_parts_names_the_migration_and_keeps_what_an_earlier_one_created() -> None:
    parts = [
        ("shop.0002_a", "BEGIN;\nCREATE TABLE tags (id int);\nCOMMIT;"),
        (
            "shop.0003_b",
            "BEGIN;\n--\n-- Alter\n--\nCREATE INDEX t ON tags (id);\nCREATE INDEX o ON orders (day);\nCOMMIT;",
        ),
    ]
    [found] = lint_parts(parts, "postgresql")
    assert (found.where, found.line, found.table) == ("shop.0003_b", 6, "orders")
    assert found.describe().startswith("shop.0003_b line 6: CREATE INDEX o ON orders (day)")
    assert "[create-index-blocking]" in found.describe()


def write(tmp_path: Path, lint: str) -> Path:
    path = tmp_path / "conveyor.yml"
    path.write_text(
        "project: p\n"
        "databases:\n"
        "  main:\n"
        "    url: postgresql://postgres@127.0.0.1/p\n"
        f"    lint: {lint}\n"
        "services:\n"
        "  api: {run: python3 server.py, migrate: {command: ./m, database: main, pending: false}}\n"
        "environments:\n"
        "  staging: {listen: '127.0.0.1:8080'}\n"
    )
    return path


def test_lint_settings_load(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "{small_table_rows: 500, allow: [{rule: drop-column, table: legacy}]}"),
        environ={},
    ).config
    lint = config.databases["main"].lint
    assert lint.small_table_rows == 500
    assert lint.allows("drop-column", "legacy")
    assert config.services["api"].migrate is not None
    assert config.services["api"].migrate.pending is False


def test_an_unknown_rule_is_a_config_error_listing_the_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "{allow: [{rule: create-index, table: orders}]}"), environ={})
    message = str(caught.value)
    assert "databases/main/lint/allow/0/rule" in message
    assert "unknown lint rule 'create-index'" in message
    assert "create-index-blocking" in message and "drop-column" in message
