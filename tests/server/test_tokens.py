"""Tokens and roles, pure: making, hashing, expiry, what each role may do where."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.errors import UsageError
from conveyor.server import access, tokens
from conveyor.server.access import Action
from conveyor.store.records import ROLES, TokenRecord

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def record(secret: str, role: str = "viewer", envs: list[str] | None = None) -> TokenRecord:
    return TokenRecord(
        name="alice",
        role=role,
        token_hash=tokens.token_hash(secret),
        created_at=NOW,
        created_by="tester",
        environments=envs or [],
    )


def test_a_token_is_prefixed_random_and_only_its_sha256_is_kept() -> None:
    made = {tokens.new_token() for _ in range(100)}
    assert len(made) == 100
    for token in made:
        assert token.startswith("cvt_") and len(token) >= 4 + 43  # 256 bits in base64
    token = next(iter(made))
    digest = tokens.token_hash(token)
    assert len(digest) == 64 and token not in digest
    assert tokens.token_hash(token) == digest != tokens.token_hash(token + "x")


def test_valid_refuses_unknown_revoked_and_expired_tokens() -> None:
    secret = tokens.new_token()
    good = record(secret)
    assert tokens.valid(good, secret, NOW) is good
    with pytest.raises(tokens.TokenRejected, match="unknown"):
        tokens.valid(None, secret, NOW)
    with pytest.raises(tokens.TokenRejected, match="unknown"):
        tokens.valid(good, tokens.new_token(), NOW)  # a hash that is not this token's
    with pytest.raises(tokens.TokenRejected, match="revoked"):
        tokens.valid(replace(good, revoked_at=NOW), secret, NOW)
    expiring = replace(good, expires_at=NOW + timedelta(seconds=1))
    assert tokens.valid(expiring, secret, NOW) is expiring
    with pytest.raises(tokens.TokenRejected, match="expired"):
        tokens.valid(expiring, secret, NOW + timedelta(seconds=1))
    assert tokens.state(expiring, NOW + timedelta(days=1)) == "expired"
    assert tokens.state(replace(good, revoked_at=NOW), NOW) == "revoked"
    assert tokens.state(good, NOW) == "active"


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer cvt_abc", "cvt_abc"), ("bearer  cvt_abc ", "cvt_abc")],
)
def test_bearer_reads_the_authorization_header(header: str, token: str) -> None:
    assert tokens.bearer(header) == token


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwdw==", "Bearer ", "cvt_abc"])
def test_bearer_refuses_anything_else(header: str | None) -> None:
    with pytest.raises(tokens.TokenRejected):
        tokens.bearer(header)


def test_expiry_spans_and_bad_input() -> None:
    assert tokens.expiry(None, NOW) is None
    assert tokens.expiry("30d", NOW) == NOW + timedelta(days=30)
    assert tokens.expiry("12w", NOW) == NOW + timedelta(weeks=12)
    assert tokens.expiry("48h", NOW) == NOW + timedelta(hours=48)
    for bad in ("30", "0d", "1y", "soon", "-1d"):
        with pytest.raises(UsageError, match="--expires"):
            tokens.expiry(bad, NOW)


def test_names_and_roles_are_checked() -> None:
    assert tokens.check_name("ci@example.com") == "ci@example.com"
    for bad in ("", "a b", "x" * 65, "semi;colon"):
        with pytest.raises(UsageError, match="token name"):
            tokens.check_name(bad)
    with pytest.raises(UsageError, match="roles are: viewer, deployer, approver, admin"):
        tokens.check_role("root")


# What each role may do, anywhere: the README's roles table.
MAY = {
    "viewer": {Action.READ},
    "deployer": {Action.READ, Action.DEPLOY},
    "approver": {Action.READ, Action.APPROVE},
    "admin": set(Action),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(Action))
def test_each_role_may_do_its_actions_only(role: str, action: Action) -> None:
    why = access.refusal(record("t", role), action, "staging")
    assert (why is None) == (action in MAY[role]), why


def test_a_token_limited_to_environments_acts_only_there() -> None:
    limited = record("t", "admin", ["production"])
    assert access.refusal(limited, Action.DEPLOY, "production") is None
    assert "only in production" in (access.refusal(limited, Action.DEPLOY, "staging") or "")
    assert access.refusal(limited, Action.READ, None) is None  # the list, filtered
    assert access.refusal(limited, Action.ADMIN, None) is not None  # the audit is everyone's
    assert access.visible(limited, ["staging", "production"]) == ["production"]
    assert access.visible(record("t"), ["staging", "production"]) == ["staging", "production"]
