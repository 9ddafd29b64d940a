"""A metric from Prometheus: one instant PromQL query, one number.

`GET {url}/api/v1/query?query=...` (the HTTP API's instant query, evaluated
now). The result must be a scalar or an instant vector with exactly one
series: a query that matches several series (one per instance, per route)
is an error that lists them, not an arbitrary pick; aggregate it
(`sum(...)`, `max(...)`). An empty vector is an error too: it usually means
the metric does not exist (yet), which must not read as "no errors".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.analysis.custom import PrometheusQuery, show_url
from conveyor.sources.base import MetricSourceError, http_get, parse_reading, shorten

__all__ = ["PrometheusSource"]

_SERIES_SHOWN = 3


def _series(labels: Mapping[str, Any]) -> str:
    """A series as PromQL writes it: `errors_total{job="api"}`."""
    name = str(labels.get("__name__", ""))
    pairs = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{pairs}}}" if pairs or not name else name


class PrometheusSource:
    """The value of the instant query `query` on the Prometheus server at `url`.

    `url` is the server's base URL (`http://127.0.0.1:9090`, or with the path
    prefix it is served under); the query is evaluated with Prometheus'
    own `timeout` too, so a slow query stops on the server as well.
    """

    def __init__(self, url: str, query: str, timeout: float = 5.0) -> None:
        self.url = url
        self.query = query
        self.timeout = timeout

    @classmethod
    def from_spec(cls, spec: PrometheusQuery) -> PrometheusSource:
        return cls(spec.url, spec.query, spec.timeout)

    def __repr__(self) -> str:
        return f"PrometheusSource({show_url(self.url)!r}, {self.query!r}, timeout={self.timeout})"

    @property
    def description(self) -> str:
        return f'prometheus {show_url(self.url)} query "{shorten(self.query)}"'

    async def read(self) -> float:
        where = self.description
        endpoint = self.url.rstrip("/") + "/api/v1/query"
        params = {"query": self.query, "timeout": f"{max(1, round(self.timeout * 1000))}ms"}
        response = await http_get(endpoint, where, self.timeout, params=params)
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            snippet = shorten(response.text) or response.reason_phrase
            raise MetricSourceError(
                f"{where}: HTTP {status}, not a Prometheus API answer: {snippet}"
                if status == 200
                else f"{where}: HTTP {status}: {snippet}"
            )
        if body["status"] != "success":
            kind = body.get("errorType") or f"HTTP {status}"
            raise MetricSourceError(f"{where}: query failed ({kind}): {body.get('error')}")
        try:
            return self._value(body["data"], where)
        except (KeyError, IndexError, TypeError):
            raise MetricSourceError(
                f"{where}: unexpected answer: {shorten(response.text)}"
            ) from None

    def _value(self, data: Mapping[str, Any], where: str) -> float:
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return parse_reading(result[1], where)
        if kind == "matrix":
            raise MetricSourceError(
                f"{where}: the query gives a range vector; a metric needs one number (an"
                f" instant vector or a scalar), e.g. rate(x[1m]) rather than x[1m]"
            )
        if kind != "vector":
            raise MetricSourceError(f"{where}: the query gives a {kind}, not a number")
        series: Sequence[Mapping[str, Any]] = result
        if not series:
            raise MetricSourceError(
                f"{where}: empty result, no series matched (the metric may not exist yet,"
                f" or the selector matches nothing)"
            )
        if len(series) > 1:
            shown = ", ".join(_series(s["metric"]) for s in series[:_SERIES_SHOWN])
            more = f" and {len(series) - _SERIES_SHOWN} more" if len(series) > _SERIES_SHOWN else ""
            raise MetricSourceError(
                f"{where}: {len(series)} series, expected 1: {shown}{more}; aggregate them"
                f" into one, e.g. sum(...) or max(...)"
            )
        return parse_reading(series[0]["value"][1], where)
