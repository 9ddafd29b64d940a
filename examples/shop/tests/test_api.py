"""The shop's own tests: what its pipeline runs (`pytest` with JUnit and coverage reports)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "api"
sys.path.insert(0, str(API))
sys.path.insert(0, str(API.parent / "shared"))

import server  # noqa: E402


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    server.init_db()


def test_the_counter_starts_at_zero():
    assert server.read_count() == 0


def test_increment_counts_up_and_persists():
    assert server.increment() == 1
    assert server.increment() == 2
    assert server.read_count() == 2


def test_postgres_is_used_only_for_a_postgres_url(monkeypatch):
    assert server.postgres_url() is None
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db/shop")
    assert server.postgres_url() == "postgresql://app@db/shop"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.db")
    assert server.postgres_url() is None
