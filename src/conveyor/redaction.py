"""Keeping secrets out of messages: URLs with passwords, and known secret values in text.

The values of the secrets a command resolved (`secrets:` in conveyor.yml) are
registered here once (`register_secrets`); from then on `redact_text`, and with
it every output path built on it, masks them: the terminal and `--json`
(`RedactingStream`, installed by the CLI), the state database (a hook on every
statement, `conveyor.store.db`), error messages, notifications, the history.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

MASK = "***"

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>.*)$", re.DOTALL)
_PASSWORD_PARAM = re.compile(
    r"(?i)(?P<key>[?&](?:password|passwd|pwd|sslpassword)=)[^&#]*",
)
# Names of variables and options whose values are secrets.
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|API[_-]?KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
_NAMED_VALUE = re.compile(r"^(?P<key>-{0,2}[A-Za-z_][A-Za-z0-9_.\-]*=)(?P<value>.+)$", re.DOTALL)


# Values masked in all text, whatever the caller passes: the resolved secrets.
_REGISTERED: set[str] = set()
_LONGEST_FIRST: list[str] = []  # _REGISTERED, longest first (a secret inside another)
# Shorter registered values are not masked: they are masked wherever they appear (the
# state database included), and a short one ("prod", "1234") would hide names and paths.
_MIN_LENGTH = 6


def register_secrets(values: Iterable[str]) -> None:
    """Mask `values` in every output from now on (in this process).

    Each value is also registered as it appears escaped in JSON, and each long line
    of a multi-line value (a key file) on its own.
    """
    for value in values:
        if not value or len(value) < _MIN_LENGTH:
            continue
        _REGISTERED.add(value)
        for ascii_only in (True, False):
            _REGISTERED.add(json.dumps(value, ensure_ascii=ascii_only)[1:-1])
        if "\n" in value:
            lines = (line.strip() for line in value.splitlines())
            _REGISTERED.update(line for line in lines if len(line) >= 8)
    _LONGEST_FIRST[:] = sorted(_REGISTERED, key=len, reverse=True)


def registered_secrets() -> frozenset[str]:
    """The values `register_secrets` was given (and their escaped forms)."""
    return frozenset(_REGISTERED)


def forget_secrets() -> None:
    """Forget the registered values (tests running several commands in one process)."""
    _REGISTERED.clear()
    _LONGEST_FIRST.clear()


def redact_registered(text: str, mask: str = MASK) -> str:
    """`text` with every registered secret masked; unchanged (and fast) when none is."""
    if not _REGISTERED:
        return text
    for secret in _LONGEST_FIRST:
        if secret in text:
            text = text.replace(secret, mask)
    return text


class RedactingStream:
    """A text stream that masks the registered secrets in what is written to it (the
    CLI wraps stdout and stderr in one: the terminal and `--json` output)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_registered(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class LineRedactor:
    """Masks the registered secrets in a byte stream written on as it comes (a command's
    output appended to a log): whole lines are passed on, so that a secret split between
    two reads is still found."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if not _REGISTERED:
            out, self._pending = self._pending + chunk, b""
            return out
        data = self._pending + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < 1 << 16:
            self._pending = data
            return b""
        cut = cut or len(data)
        self._pending = data[cut:]
        return self._mask(data[:cut])

    def flush(self) -> bytes:
        out, self._pending = self._pending, b""
        return self._mask(out) if _REGISTERED else out

    @staticmethod
    def _mask(data: bytes) -> bytes:
        return redact_registered(data.decode(errors="surrogateescape")).encode(
            errors="surrogateescape"
        )


def redact_url(url: str, mask: str = MASK) -> str:
    """`url` with any password replaced by `mask`, safe for messages and logs.

    When the URL is malformed this errs on the side of hiding too much.

    >>> redact_url("postgresql://deploy:s3cret@db.internal:5432/conveyor")
    'postgresql://deploy:***@db.internal:5432/conveyor'
    >>> redact_url("postgresql://db/conveyor?user=deploy&password=s3cret")
    'postgresql://db/conveyor?user=deploy&password=***'
    """
    redacted = url
    match = _SCHEME.match(url)
    if match:
        rest = match["rest"]
        at = rest.rfind("@")
        colon = rest.find(":")
        if at != -1 and -1 < colon < at:
            rest = rest[:colon] + ":" + mask + rest[at:]
        redacted = match["scheme"] + rest
    return _PASSWORD_PARAM.sub(lambda m: m["key"] + mask, redacted)


def url_secrets(url: str) -> list[str]:
    """The password strings of `url` (user info and query), as written and decoded.

    >>> url_secrets("mysql://root:p%40ss@db/app?sslpassword=k3y")
    ['p%40ss', 'p@ss', 'k3y']
    """
    found: set[str] = set()
    match = _SCHEME.match(url)
    if match:
        rest = match["rest"]
        at = rest.rfind("@")
        colon = rest.find(":")
        if at != -1 and -1 < colon < at:
            found.add(rest[colon + 1 : at])
    found.update(m.group(0).split("=", 1)[1] for m in _PASSWORD_PARAM.finditer(url))
    found |= {unquote(s) for s in found}
    return sorted((s for s in found if s), key=lambda s: (-len(s), s))


def redact_text(text: str, secrets: Iterable[str | None], mask: str = MASK) -> str:
    """`text` with every occurrence of each secret replaced by `mask`.

    Empty and very short secrets are skipped: masking every "a" in a message
    would hide the message, not the secret.

    >>> redact_text("auth failed for user app with password hunter2", ["hunter2"])
    'auth failed for user app with password ***'
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, mask)
    return redact_registered(text, mask)


def env_secrets(env: Mapping[str, str]) -> list[str]:
    """The secret values of an environment: variables named like secrets
    (`SECRET_NAME`), and the passwords of URLs in any variable.

    >>> env_secrets({"API_TOKEN": "t0k", "DATABASE_URL": "postgres://u:pw1@db/x", "A": "b"})
    ['pw1', 't0k']
    """
    found = {v for k, v in env.items() if v and SECRET_NAME.search(k)}
    for value in env.values():
        if "://" in value:
            found.update(url_secrets(value))
    return sorted(found, key=lambda s: (-len(s), s))


def redact_argv(argv: Iterable[str], secrets: Iterable[str | None], mask: str = MASK) -> list[str]:
    """A command line safe to record: known secret values masked, and the values of
    options and assignments named like secrets (`--password X`, `--api-key=X`,
    `DB_PASSWORD=X`), and URL passwords.

    >>> redact_argv(["psql", "--password", "pw", "TOKEN=abc", "mysql://u:p@h/d", "x"], [])
    ['psql', '--password', '***', 'TOKEN=***', 'mysql://u:***@h/d', 'x']
    """
    known = list(secrets)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(mask)
            hide_next = False
            continue
        named = _NAMED_VALUE.match(arg)
        if named and SECRET_NAME.search(named["key"]):
            out.append(named["key"] + mask)
            continue
        hide_next = arg.startswith("-") and "=" not in arg and bool(SECRET_NAME.search(arg))
        out.append(redact_text(redact_url(arg, mask) if "://" in arg else arg, known, mask))
    return out
