"""API tokens and the audit in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.errors import UsageError
from conveyor.store import Store
from conveyor.store.records import AuditRecord, TokenRecord

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def token(name: str, digest: str, **extra: object) -> TokenRecord:
    return TokenRecord(
        name=name,
        role="deployer",
        token_hash=digest,
        created_at=NOW,
        created_by="tester",
        **extra,  # type: ignore[arg-type]
    )


def test_tokens_are_found_by_hash_revoked_and_listed(store: Store) -> None:
    store.add_token(token("ci", "a" * 64, environments=["staging"]))
    store.add_token(token("alice", "b" * 64, expires_at=NOW + timedelta(days=30)))
    with pytest.raises(UsageError, match='a token named "ci" exists already'):
        store.add_token(token("ci", "c" * 64))
    found = store.find_token("a" * 64)
    assert found is not None and found.name == "ci" and found.environments == ["staging"]
    assert store.find_token("c" * 64) is None
    assert store.update_token("ci", revoked_at=NOW, last_used_at=NOW)
    assert not store.update_token("nobody", revoked_at=NOW)
    ci = store.get_token("ci")
    assert ci is not None and ci.revoked_at == NOW and ci.last_used_at == NOW
    assert [t.name for t in store.list_tokens()] == ["alice", "ci"]  # by creation, then name
    alice = store.get_token("alice")
    assert alice is not None and alice.expires_at == NOW + timedelta(days=30)


def test_the_audit_lists_newest_first(store: Store) -> None:
    for i in range(3):
        store.add_audit(
            AuditRecord(
                id=0,
                time=NOW + timedelta(seconds=i),
                token="ci",
                role="deployer",
                method="POST",
                path=f"/api/environments/staging/{i}",
                status=202,
                outcome="accepted",
                environment="staging",
            )
        )
    entries = store.list_audit(limit=2)
    assert [e.path for e in entries] == [
        "/api/environments/staging/2",
        "/api/environments/staging/1",
    ]
    assert entries[0].id > entries[1].id and entries[0].token == "ci"
