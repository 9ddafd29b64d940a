"""Run the longest test files first.

`./scripts/test` gives each of two workers one file at a time, in collection
order. Started last, a file of long end-to-end tests leaves the other worker idle
at the end; started first, the short files fill in around it (longest first is
the classic way to balance such a schedule).
"""

from __future__ import annotations

import pytest

# The end-to-end files, longest first (`--durations`, 2 cores).
LONGEST_FIRST = (
    "e2e/test_node_apps.py",
    "e2e/test_python_apps.py",
    "e2e/test_flask_app.py",
    "e2e/test_progressive.py",
    "e2e/test_databases.py",
    "e2e/test_recovery.py",
    "e2e/test_shop.py",
    "e2e/test_django_migrations.py",
    "e2e/test_policies.py",
    "e2e/test_operations.py",
    "e2e/test_hooks_notify.py",
    "e2e/test_haproxy.py",
    "pipeline/test_pipeline_cli.py",
    "databases/test_db_cli.py",
)


def _rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    for rank, name in enumerate(LONGEST_FIRST):
        if path.endswith(name):
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/e2e/" in item.path.as_posix():
            item.add_marker(pytest.mark.e2e)  # `-m "not e2e"`: the fast loop
    items.sort(key=_rank)  # stable: the rest keep their order
