"""HTTP check: one request, a status code compared with the expected one."""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from conveyor.checks.answers import Answer, first_line
from conveyor.checks.base import CheckResult

_BODY_SNIPPET = 80


@functools.cache
def _ssl_context(trust: Path | None = None) -> ssl.SSLContext:
    # Building a context loads the CA bundle (~25 ms of CPU, blocking the event
    # loop); health checks are polled, so build it once per process (and file).
    if trust is None:
        return httpx.create_ssl_context()
    from conveyor.routers.tls import trusting

    return trusting(trust)


def _describe_error(exc: Exception, timeout: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        phase = " (connect)" if isinstance(exc, httpx.ConnectTimeout) else ""
        return f"timed out after {timeout:g} s{phase}"
    if isinstance(exc, httpx.ConnectError | OSError):
        # httpx wraps the socket error ("All connection attempts failed"); the
        # original at the bottom of the chain says what actually happened.
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, OSError) and cause.strerror:
                return f"cannot connect: {cause.strerror}"
            cause = cause.__cause__ or cause.__context__
        return f"cannot connect: {exc or type(exc).__name__}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"protocol error: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class HttpCheck:
    """`GET url` answers `expect_status` within `timeout` seconds; redirects are not followed.

    `secrets` are masked in the body line a failing result quotes; `host_header`, when
    given, is the request's `Host:` (the URL's host and port otherwise); `trust`, a
    certificate file (an environment's `tls:`) an https URL may present besides the usual CAs.
    """

    def __init__(
        self,
        url: str,
        expect_status: int = 200,
        timeout: float = 5.0,
        secrets: Sequence[str] = (),
        host_header: str | None = None,
        trust: Path | None = None,
    ) -> None:
        self.url = url
        self.expect_status = expect_status
        self.timeout = timeout
        self.secrets = tuple(secrets)
        self.host_header = host_header  # sent as `Host:` instead of the URL's
        self.trust = trust

    def __repr__(self) -> str:
        return (
            f"HttpCheck({self.url!r}, expect_status={self.expect_status}, timeout={self.timeout})"
        )

    async def run(self) -> CheckResult:
        """Send one GET request; never raises for a failing target."""
        head = f"GET {self.url} ->"
        # trust_env=False: a proxy from HTTP_PROXY must never sit between a
        # health check and the instance it probes.
        async with httpx.AsyncClient(
            follow_redirects=False,
            timeout=self.timeout,
            trust_env=False,
            verify=_ssl_context(self.trust) if self.url.startswith("https:") else False,
        ) as client:
            start = time.perf_counter()
            try:
                # httpx times each phase separately; this bounds the whole request.
                async with asyncio.timeout(self.timeout):
                    headers = {"Host": self.host_header} if self.host_header else None
                    response = await client.get(self.url, headers=headers)
            except (httpx.HTTPError, TimeoutError, OSError) as exc:
                duration = time.perf_counter() - start
                return CheckResult(False, f"{head} {_describe_error(exc, self.timeout)}", duration)
        duration = time.perf_counter() - start
        status = response.status_code
        detail = f"{head} {status} in {duration * 1000:.0f} ms"
        location = response.headers.get("location")
        answer = Answer(status, first_line(response.text, self.secrets), location)
        if status == self.expect_status:
            return CheckResult(True, detail, duration, answer)
        detail += f" (expected {self.expect_status})"
        if location:
            detail += f", location: {location}"
        else:
            snippet = first_line(response.text, self.secrets, _BODY_SNIPPET)
            if snippet:
                detail += f": {snippet}"
        return CheckResult(False, detail, duration, answer)
