"""One conveyor server, spoken to over its HTTP API with the token of `CONVEYOR_TOKEN`.

What the server answers other than a success (`{"error", "hint"}`), and what keeps an
answer from arriving (connection refused, TLS, timeouts), become `ConveyorError`s that
name the server and say what to do, with the exit codes of the local commands: 2 for
what names something unknown or is malformed (400, 404, 422), 1 for the rest.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from conveyor.errors import ConveyorError, UsageError

if TYPE_CHECKING:
    import httpx

TOKEN_VARIABLE = "CONVEYOR_TOKEN"  # noqa: S105 (the name of the variable)
SERVER_VARIABLE = "CONVEYOR_SERVER"
# A change answers within about two seconds of starting (202 after); starting the
# platform first (supervisord, the router) can take longer on a busy machine.
READ_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 10.0

ROLES_HINT = (
    "viewer reads; deployer deploys, promotes, pauses, resumes, aborts and rolls back; "
    "approver approves and rejects; admin reads the audit"
)


def server_url(text: str) -> str:
    """The server's base URL from `--server` / CONVEYOR_SERVER, checked: http(s)://HOST[:PORT]."""
    url = text.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f'--server "{text}": expected http://HOST:PORT or https://HOST',
            hint="e.g. --server https://conveyor.example.com (or set CONVEYOR_SERVER)",
        )
    if parts.query or parts.fragment:
        raise UsageError(f'--server "{text}": expected a URL without ?query or #fragment')
    return url


def in_clear(url: str) -> bool:
    """Whether a token sent to `url` crosses a network unencrypted: http:// to a host
    that is not this machine's loopback."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def token_from_environment(url: str) -> str:
    """The token of CONVEYOR_TOKEN: never an argument, which every user of the machine
    could read in `ps`."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise UsageError(
            f"{TOKEN_VARIABLE} is not set: conveyor server at {url} needs a token",
            hint="on the server's machine: conveyor tokens create --name YOU --role ROLE; "
            f"then export {TOKEN_VARIABLE}=cvt_...",
        )
    return token


@dataclass(frozen=True)
class Answer:
    """A successful answer: its status (200, 202) and JSON body."""

    status: int
    body: Any


def answer_error(url: str, status: int, body: Any) -> ConveyorError:
    """The error of an answer other than 2xx from the server at `url`."""
    error, hint = _error_fields(body)
    at = f"(conveyor server {url})"
    if status == 401:
        return ConveyorError(
            f"the token in {TOKEN_VARIABLE} was refused {at}: it is unknown there, "
            "revoked or expired",
            hint=f"ask the server's admin for a token (conveyor tokens create on its "
            f"machine) and export {TOKEN_VARIABLE}=cvt_...",
        )
    if status == 403:
        return ConveyorError(
            f"{error or 'forbidden'} {at}",
            hint=hint or f"ask for a token whose role allows it ({ROLES_HINT})",
        )
    if error is None:  # not the API's answer: a proxy's page, another service
        return ConveyorError(
            f"{url} answered HTTP {status}, which is not an answer of conveyor server",
            hint=f"check that --server (or {SERVER_VARIABLE}) names conveyor server's URL",
        )
    if status in (400, 404, 422):
        return UsageError(f"{error} {at}", hint=hint)
    if status >= 500:
        return ConveyorError(
            f"{error} {at}", hint=hint or "the server's log has the details (conveyor server)"
        )
    return ConveyorError(f"{error} {at}", hint=hint)  # 409: the state does not allow it


def _error_fields(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        hint = body.get("hint")
        return body["error"], hint if isinstance(hint, str) else None
    return None, None


def transport_error(url: str, error: Exception) -> ConveyorError:
    """Why no answer came from `url`, and what to do."""
    import httpx

    if isinstance(error, httpx.TimeoutException):
        return ConveyorError(
            f"conveyor server at {url} did not answer in time ({type(error).__name__})",
            hint=f"is the server overloaded, or the address wrong? check: curl {url}/healthz",
        )
    tls = _tls_reason(error)
    if tls is not None:
        return ConveyorError(
            f"cannot reach conveyor server at {url} securely: TLS failed: {tls}",
            hint="its certificate must be valid for that name and signed by a CA this machine "
            "trusts (for a private CA: export SSL_CERT_FILE=/path/to/ca.pem)",
        )
    if isinstance(error, httpx.ConnectError):
        reason = _reason(error)
        hint = (
            f"check the host name in --server (or {SERVER_VARIABLE})"
            if reason == "unknown host name"
            else "is it running there (conveyor server start, on its machine)? "
            f"check --server (or {SERVER_VARIABLE})"
        )
        return ConveyorError(f"cannot reach conveyor server at {url}: {reason}", hint=hint)
    return ConveyorError(
        f"conveyor server at {url}: {_reason(error)}",
        hint=f"check --server (or {SERVER_VARIABLE}) and try again",
    )


def _tls_reason(error: BaseException) -> str | None:
    """The TLS problem behind `error`, if one is."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        if isinstance(seen, ssl.SSLError):
            return seen.reason or str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text or "[SSL" in text:
        return text
    return None


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return text


class Client:
    """The API of one conveyor server, as the token's holder."""

    def __init__(self, url: str, token: str, transport: httpx.BaseTransport | None = None):
        import httpx

        self.url = url
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            transport=transport,
            follow_redirects=False,
        )

    def get(self, path: str, **params: Any) -> Answer:
        return self._send("GET", path, params=params or None)

    def post(self, path: str, body: dict[str, Any]) -> Answer:
        return self._send("POST", path, json=body)

    def _send(self, method: str, path: str, **kwargs: Any) -> Answer:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise transport_error(self.url, error) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not 200 <= response.status_code < 300:
            raise answer_error(self.url, response.status_code, body)
        if body is None and response.content.strip() not in (b"", b"null"):
            raise answer_error(self.url, response.status_code, None)
        return Answer(response.status_code, body)

    def close(self) -> None:
        self._http.close()
