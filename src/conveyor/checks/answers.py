"""What a health check's wrong HTTP answers mean, and when to stop waiting for a right one.

A server that is still booting refuses connections or times out; a server
that is up but misconfigured answers, and keeps answering the same: Django
says 400 to a Host header outside ALLOWED_HOSTS and 301 under
SECURE_SSL_REDIRECT, a wrong health path is a 404 (or a redirect to the path
with a slash), a crash on every request is a 500. Waiting the whole
`deploy_timeout` for those helps nobody. `WrongAnswers` counts identical
wrong answers in a row after a grace period; `explain` turns the last one
into a message and a hint. Everything here is pure.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from conveyor.redaction import redact_text

FIRST_LINE_CHARS = 120
_TITLE = re.compile(r"<title[^>]*>(?P<title>.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b(?P<key>[\w.-]*(?:password|passwd|secret|token|api_?key)[\w.-]*\s*[=:]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s'\",;&]+)"
)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer to a health check: the status, the gist of the body, a redirect."""

    status: int
    first_line: str = ""
    """The body's first line of text (an HTML page's title), secrets masked, truncated."""
    location: str | None = None


def first_line(body: str, secrets: Iterable[str] = (), limit: int = FIRST_LINE_CHARS) -> str:
    """The line of `body` that says what went wrong, safe to print.

    An HTML page gives its title (Django's "DisallowedHost at /health"), else
    its first line of text; known secret values and `password=...`-like
    assignments are masked; the result is cut at `limit` characters.

    >>> first_line("<!doctype html><html><head><title>Bad Request (400)</title>")
    'Bad Request (400)'
    >>> first_line("\\n\\nboom: password=hunter2 rejected\\nmore")
    'boom: password=*** rejected'
    """
    text = body
    if "<" in body:
        title = _TITLE.search(body)
        # A title may span lines; the text of a page without one is split at its tags.
        text = " ".join(title.group("title").split()) if title else _TAG.sub("\n", body)
        text = html.unescape(text)
    line = next((" ".join(part.split()) for part in text.splitlines() if part.strip()), "")
    line = _ASSIGNED_SECRET.sub(lambda m: m.group("key") + "***", line)
    line = redact_text(line, secrets)
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return line


class WrongAnswers:
    """Counts identical wrong answers in a row, ignoring those of the start period.

    `observe` is given every attempt's answer (None when there was none:
    connection refused, timeout) and whether the start period is over; it
    returns True once `threshold` answers in a row had the same wrong status.
    A right answer, no answer or a different status starts the count again:
    only an app that keeps saying the same wrong thing is given up on.
    """

    def __init__(self, threshold: int, expect_status: int) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        self.expect_status = expect_status
        self.status: int | None = None
        self.count = 0

    def observe(self, answer: Answer | None, counting: bool = True) -> bool:
        """Record one attempt; True when the instance should be failed now."""
        if answer is None or answer.status == self.expect_status or not counting:
            self.status, self.count = None, 0
            return False
        if answer.status == self.status:
            self.count += 1
        else:
            self.status, self.count = answer.status, 1
        return self.count >= self.threshold


def reason(status: int) -> str:
    """`400 Bad Request`; the number alone for a status without a standard name."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def hint_for(answer: Answer, path: str, logs_command: str) -> str:
    """What to look at for a health check that keeps getting `answer` on `path`."""
    status = answer.status
    if status == 400:
        return (
            "a 400 to every request is usually the Host header being refused: Django's "
            'ALLOWED_HOSTS must include "127.0.0.1" (the Host header of the health check) '
            "beside the public host names; the same goes for other host allow-lists"
        )
    if status in (301, 302, 303, 307, 308):
        return _redirect_hint(answer.location, path)
    if status == 404:
        return (
            f"the app has no page at {path}: set health.path in conveyor.yml to a page it "
            "serves (or add one)"
        )
    if status in (401, 403):
        return (
            f"{path} needs a login or is forbidden: point health.path at a public page, or "
            "check a host allow-list (Django's ALLOWED_HOSTS answers 400, others 403)"
        )
    if status == 405:
        return f"{path} does not answer GET: the health check sends a GET request"
    if status >= 500:
        return f"the app fails on {path}; its log says why: {logs_command}"
    return (
        f"the health check expects another status: fix the app or set health.expect_status "
        f"in conveyor.yml to {status} if that is right; the log: {logs_command}"
    )


def _redirect_hint(location: str | None, path: str) -> str:
    if not location:
        return f"{path} redirects without a Location: point health.path at the page itself"
    target = urlsplit(location)
    if target.scheme == "https":
        return (
            f"the app redirects {path} to HTTPS ({location}): the health check talks plain "
            "HTTP to the instance. Exempt the health path from the redirect (Django: "
            "SECURE_SSL_REDIRECT with SECURE_REDIRECT_EXEMPT, or SECURE_PROXY_SSL_HEADER "
            "behind a TLS proxy), or set health.path to a page that is not redirected"
        )
    if target.path and target.path.rstrip("/") == path.rstrip("/"):
        return (
            f"{path} redirects to {target.path} (a trailing slash added or removed): set "
            f"health.path in conveyor.yml to {target.path}"
        )
    if target.path:
        return (
            f"{path} redirects to {location} (a login page?): health checks do not follow "
            f"redirects; set health.path to a page that answers itself"
        )
    return f"{path} redirects to {location}: point health.path at a page that answers itself"


def explain(
    answer: Answer, times: int, url: str, expect_status: int, logs_command: str
) -> tuple[str, str]:
    """(message, hint) for an instance given up on after `times` identical answers."""
    path = urlsplit(url).path or "/"
    message = (
        f"GET {url} answered {reason(answer.status)} {times} times in a row "
        f"(expected {expect_status})"
    )
    if answer.location:
        message += f", location: {answer.location}"
    if answer.first_line:
        message += f'; body: "{answer.first_line}"'
    return message, hint_for(answer, path, logs_command)
