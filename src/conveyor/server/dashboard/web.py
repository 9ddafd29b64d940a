"""What every dashboard page shares: who is signed in, what they may see, and how a
page is rendered (Jinja2 templates shipped in the package, masked like the API)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.redaction import redact_registered
from conveyor.server import access, tokens
from conveyor.server.access import Action
from conveyor.server.dashboard.sessions import COOKIE, Session, Sessions
from conveyor.store.records import TokenRecord

log = logging.getLogger("conveyor.server")
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
NAV = (
    ("environments", "/environments", "Environments"),
    ("pipeline", "/pipeline", "Pipeline"),
    ("dora", "/dora", "DORA"),
    ("alerts", "/alerts", "Alerts"),
)


class LoginNeeded(Exception):
    """No valid session: the browser goes to the log-in page."""


class Forbidden(Exception):
    """Signed in, but the token's role or environments do not allow the page (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(Exception):
    """No such environment or deployment (404)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def sessions_of(request: Request) -> Sessions:
    found: Sessions = request.app.state.sessions
    return found


def session_token(request: Request) -> tuple[TokenRecord, Session] | None:
    """The token of the request's session cookie when it is still valid, else None."""
    sid = request.cookies.get(COOKIE)
    session = sessions_of(request).get(sid)
    if session is None:
        return None
    control = request.app.state.control
    record = control.store.find_token(session.token_hash)
    now = datetime.now(UTC)
    if record is None or tokens.state(record, now) != "active":
        sessions_of(request).close(sid)
        return None
    if record.last_used_at is None or now - record.last_used_at >= tokens.TOUCH_EVERY:
        control.store.update_token(record.name, last_used_at=now)
    return record, session


def signed_in(request: Request) -> tuple[TokenRecord, Session]:
    """The signed-in token and its session, or `LoginNeeded`."""
    found = session_token(request)
    if found is None:
        raise LoginNeeded
    request.state.token = found[0]  # the audit names it for every change
    return found


def allow(request: Request, token: TokenRecord, action: Action, environment: str | None) -> None:
    request.state.environment = environment
    why = access.refusal(token, action, environment)
    if why is not None:
        raise Forbidden(f"forbidden: {why}")


@cache
def _templates() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["ago"] = ago
    return env


def when(value: Any) -> str:
    """A time as the pages show it: 2026-12-06 21:45:02 UTC."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def ago(value: Any) -> str:
    """A time of day for timeline entries: 21:45:02."""
    if value is None:
        return ""
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%H:%M:%S}"


def fragment(name: str, **context: Any) -> str:
    """A template rendered and masked (a part of a page, or a live update)."""
    html: str = _templates().get_template(name).render(**context)
    return redact_registered(html)


def page(
    request: Request,
    name: str,
    token: TokenRecord | None,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """A whole page: masked by the redaction registry, with the security headers."""
    flash = sessions_of(request).pop_flash(request.cookies.get(COOKIE)) if session else None
    html = fragment(
        name,
        token=token,
        csrf=session.csrf if session else "",
        nav=NAV,
        flash=flash,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def error_page(request: Request, status: int, message: str) -> Response:
    found = session_token(request)
    token, session = found if found else (None, None)
    return page(
        request, "error.html", token, session, status_code=status, status=status, message=message
    )
