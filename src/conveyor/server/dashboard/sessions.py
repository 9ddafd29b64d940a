"""The dashboard's log-in sessions: a token typed once, a cookie after.

The cookie holds a random session id (256 bits) and nothing else; the server keeps,
in memory, which token (by its hash) each session belongs to and the session's
CSRF secret. Every request looks the token up again, so a revoked or expired token
logs its sessions out at once. Sessions end at logout, after `LIFETIME`, or when the
server restarts (the user logs in again). The cookie is HttpOnly, SameSite=Strict,
and Secure when the request came over TLS (directly or through the router).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import Request, Response

COOKIE = "conveyor_session"
LOGIN_COOKIE = "conveyor_login"  # the log-in form's CSRF secret, before any session
LIFETIME_S = 12 * 3600.0
MAX_SESSIONS = 10_000  # the oldest go first beyond this


@dataclass(frozen=True)
class Session:
    token_hash: str
    csrf: str
    expires: float  # time.monotonic()


class Sessions:
    """Sessions by id, shared by the server's threads."""

    def __init__(self, lifetime_s: float = LIFETIME_S) -> None:
        self._by_id: dict[str, Session] = {}
        self._flash: dict[str, str] = {}  # session id -> what the next page says once
        self._lock = threading.Lock()
        self.lifetime_s = lifetime_s

    def open(self, token_hash: str) -> tuple[str, Session]:
        """A new session for the token with this hash: its id (the cookie) and itself."""
        sid = secrets.token_urlsafe(32)
        session = Session(token_hash, secrets.token_urlsafe(32), time.monotonic() + self.lifetime_s)
        with self._lock:
            if len(self._by_id) >= MAX_SESSIONS:
                oldest = min(self._by_id, key=lambda k: self._by_id[k].expires)
                del self._by_id[oldest]
                self._flash.pop(oldest, None)
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._by_id.get(sid)
            if session is not None and session.expires <= time.monotonic():
                del self._by_id[sid]
                self._flash.pop(sid, None)
                return None
        return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)
            self._flash.pop(sid or "", None)

    def flash(self, sid: str | None, message: str) -> None:
        """Say `message` on the session's next page (the outcome of a button)."""
        if sid:
            with self._lock:
                self._flash[sid] = message

    def pop_flash(self, sid: str | None) -> str | None:
        with self._lock:
            return self._flash.pop(sid or "", None)


def over_tls(request: Request) -> bool:
    """Whether the browser reached the server over HTTPS (the router sets X-Forwarded-Proto)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=over_tls(request),
    )


def same(expected: str | None, given: str | None) -> bool:
    """Whether a CSRF secret sent with a form is the one expected (constant time)."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
