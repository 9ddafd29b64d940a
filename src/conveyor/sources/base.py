"""The `MetricSource` protocol, its error, and what the sources share."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Protocol

import httpx

from conveyor.checks.http import _describe_error, _ssl_context
from conveyor.errors import ConveyorError

__all__ = [
    "MetricSource",
    "MetricSourceError",
    "http_client",
    "http_get",
    "parse_reading",
    "shorten",
]

_SHOWN_CHARS = 80


class MetricSourceError(ConveyorError):
    """A metric could not be read: unreachable, bad status, not a number, timed out...

    The message names the source (URL and query, or command) and what went
    wrong; it never holds a header value or a URL password.
    """


class MetricSource(Protocol):
    """Where a custom metric's number comes from."""

    async def read(self) -> float:
        """Read the metric's current value once, within the source's timeout.

        Raises `MetricSourceError` with a message for people when the value
        cannot be read; never returns NaN or an infinity.
        """
        ...


def shorten(text: str, limit: int = _SHOWN_CHARS) -> str:
    """`text` on one line, cut to `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def parse_reading(value: object, where: str) -> float:
    """A number from what a source returned: a JSON number or a string holding one.

    `where` starts the message of the `MetricSourceError` raised otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MetricSourceError(f"{where}: expected a number, got {_kind(value)}")
    try:
        number = float(value)
    except ValueError:
        raise MetricSourceError(
            f'{where}: expected a number, got "{shorten(str(value))}"'
        ) from None
    if math.isnan(number):
        raise MetricSourceError(f"{where}: the value is NaN (no data, or 0/0)")
    if math.isinf(number):
        raise MetricSourceError(f"{where}: the value is {number:+} (not a finite number)")
    return number


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def http_client(url: str, timeout: float) -> httpx.AsyncClient:
    """A client for one read of `url`.

    trust_env=False: a proxy or netrc from the environment never changes what
    a canary is judged on; redirects are not followed (a redirect is a wrong URL).
    """
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=timeout,
        trust_env=False,
        verify=_ssl_context() if url.startswith("https:") else True,
    )


async def http_get(
    url: str,
    where: str,
    timeout: float,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """`GET url` within `timeout` seconds in all; `MetricSourceError` starting with `where`."""
    async with http_client(url, timeout) as client:
        try:
            # httpx times each phase separately; this bounds the whole request.
            async with asyncio.timeout(timeout):
                return await client.get(url, params=params, headers=headers)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            raise MetricSourceError(f"{where}: {_describe_error(exc, timeout)}") from None
