"""API tokens: made, stored as a hash, checked.

A token is `cvt_` and 32 random bytes (256 bits, URL-safe base64): the prefix
lets secret scanners spot one in a paste or a commit. The store keeps only its
SHA-256. A slow password hash (bcrypt, scrypt, argon2) protects secrets a person
chose, which an attacker with the hashes can guess; nobody can guess 256 random
bits, fast hash or not, and a fast hash lets every request be checked in
microseconds, looked up by its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from conveyor.errors import UsageError
from conveyor.store.records import ROLES, TokenRecord

PREFIX = "cvt_"
_BYTES = 32
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")
# `last_used_at` is written at most this often per token (not on every request).
TOUCH_EVERY = timedelta(minutes=1)


class TokenRejected(Exception):
    """The presented token is no valid token (401); `reason` says why, for the log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_token() -> str:
    """A fresh random token."""
    return PREFIX + secrets.token_urlsafe(_BYTES)


def token_hash(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    """A token's name (its identity in the history and the audit), or `UsageError`."""
    if not name or len(name) > 64 or not set(name) <= NAME_CHARS:
        raise UsageError(
            f'token name "{name}": use 1 to 64 letters, digits, ".", "_", "@" or "-"',
            hint="the name is who the token acts as: e.g. ci, alice@example.com",
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f'unknown role "{role}" (roles are: {", ".join(ROLES)})')
    return role


def expiry(text: str | None, now: datetime) -> datetime | None:
    """When a token made `now` with `--expires TEXT` ("30d", "12w", "48h") expires."""
    if text is None:
        return None
    from conveyor.config.durations import parse_span

    span = parse_span(text)
    if span is None or not span:
        raise UsageError(f'--expires "{text}": expected a span like 30d, 12w or 48h')
    return now + span


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer TOKEN` header, or `TokenRejected`."""
    if not header:
        raise TokenRejected("no Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected('the Authorization header is not "Bearer TOKEN"')
    return token.strip()


def valid(record: TokenRecord | None, presented: str, now: datetime) -> TokenRecord:
    """`record` (found by the hash of `presented`) when it may be used `now`."""
    if record is None or not hmac.compare_digest(record.token_hash, token_hash(presented)):
        raise TokenRejected("unknown token")
    if record.revoked_at is not None:
        raise TokenRejected(f"token {record.name} was revoked")
    if record.expires_at is not None and record.expires_at <= now:
        raise TokenRejected(f"token {record.name} expired")
    return record


def state(record: TokenRecord, now: datetime) -> str:
    """ "active", "revoked" or "expired" (for `conveyor tokens list`)."""
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"
