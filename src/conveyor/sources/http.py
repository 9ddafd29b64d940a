"""A metric from an HTTP endpoint returning JSON: `GET url`, the number at `path`.

`path` is dotted: keys of objects and indexes of lists (`data.error_rate`,
`items.0.value`, `items.-1.value` for the last item); an empty path means
the whole document is the number. The value may be a JSON number or a
string holding one ("0.25"). A status other than 2xx, a body that is not
JSON, a missing key or a value that is not a number is a failed read.
Header values may be secrets: they are sent, never shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from conveyor.analysis.custom import REDACTED, HttpJson, show_url
from conveyor.sources.base import MetricSourceError, http_get, parse_reading, shorten

__all__ = ["HttpSource", "json_path"]

_KEYS_SHOWN = 10
_SECRET_CHARS = 6


def _kind(node: object) -> str:
    if isinstance(node, dict):
        return "an object"
    if isinstance(node, list):
        return "a list"
    return "null" if node is None else f"a {type(node).__name__}"


def json_path(document: object, path: str) -> object:
    """The value at the dotted `path` of a JSON `document`; `ValueError` saying what is missing.

    >>> json_path({"data": {"items": [{"v": 1}, {"v": 2}]}}, "data.items.-1.v")
    2
    """
    node = document
    steps = path.split(".") if path else []
    for i, step in enumerate(steps):
        at = f'"{".".join(steps[:i])}"' if i else "the document"
        if isinstance(node, list):
            items: Sequence[object] = node
            try:
                node = items[int(step)]
            except ValueError:
                raise ValueError(
                    f'"{step}" is not an index, and {at} is a list of {len(items)} items'
                ) from None
            except IndexError:
                raise ValueError(f"no item {step} in {at}, a list of {len(items)} items") from None
        elif isinstance(node, dict):
            fields: Mapping[str, object] = node
            if step not in fields:
                keys = ", ".join(sorted(fields)[:_KEYS_SHOWN])
                more = ", ..." if len(fields) > _KEYS_SHOWN else ""
                known = f" (its keys: {keys}{more})" if keys else " (it is empty)"
                raise ValueError(f'no key "{step}" in {at}{known}')
            node = fields[step]
        else:
            raise ValueError(f'{at} is {_kind(node)}, not an object or a list to find "{step}" in')
    return node


class HttpSource:
    """The number at `path` in the JSON that `GET url` answers (2xx), within `timeout`."""

    def __init__(
        self,
        url: str,
        path: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.path = path
        self.headers = dict(headers or {})
        self.timeout = timeout

    @classmethod
    def from_spec(cls, spec: HttpJson) -> HttpSource:
        return cls(spec.url, spec.path, dict(spec.headers), spec.timeout)

    def __repr__(self) -> str:
        # Header names only: their values may be secrets.
        return (
            f"HttpSource({show_url(self.url)!r}, {self.path!r}, headers={sorted(self.headers)},"
            f" timeout={self.timeout})"
        )

    @property
    def description(self) -> str:
        return f"GET {show_url(self.url)}"

    def _scrub(self, text: str) -> str:
        """`text` without any header value in it (a server may echo a token back).

        Whole values and their words ("Bearer <token>"), from 6 characters: a
        short value ("2", "json") is no secret, and hiding it would garble
        the message ("HTTP 502").
        """
        secrets = {value.strip() for value in self.headers.values()}
        secrets.update(word for value in self.headers.values() for word in value.split())
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= _SECRET_CHARS:
                text = text.replace(secret, REDACTED)
        return text

    async def read(self) -> float:
        try:
            return await self._read()
        except MetricSourceError as exc:
            raise MetricSourceError(self._scrub(exc.message)) from None

    async def _read(self) -> float:
        where = self.description
        for name, sent in self.headers.items():
            if sent == REDACTED:
                raise MetricSourceError(
                    f"{where}: header {name} was redacted in a recorded spec; read the"
                    f" metric with the spec from the configuration"
                )
        headers = {"Accept": "application/json", **self.headers}
        response = await http_get(self.url, where, self.timeout, headers=headers)
        status = response.status_code
        if not 200 <= status < 300:
            detail = f"HTTP {status} {response.reason_phrase}".rstrip()
            location = response.headers.get("location")
            if location:
                detail += f" (redirects are not followed), location: {show_url(location)}"
            elif snippet := shorten(response.text):
                detail += f": {snippet}"
            raise MetricSourceError(f"{where}: {detail}")
        try:
            document = response.json()
        except ValueError:
            shown = shorten(response.text) or "an empty body"
            raise MetricSourceError(f"{where}: the answer is not JSON: {shown}") from None
        try:
            value = json_path(document, self.path)
        except ValueError as exc:
            raise MetricSourceError(f"{where}: {self.path}: {exc}") from None
        return parse_reading(value, f"{where}: {self.path}" if self.path else where)
