"""PrometheusSource against a real Prometheus scraping a real exporter."""

from __future__ import annotations

import asyncio
import time

import pytest

from conveyor.analysis import Analysis, AnalysisSpec, Decision, ReleaseStats
from conveyor.sources import MetricSourceError, PrometheusSource, read_metrics
from tests.sources.conftest import EXPOSITION, Prometheus, Route, Server, free_port


def read(url: str, query: str, timeout: float = 5.0) -> float:
    return asyncio.run(PrometheusSource(url, query, timeout).read())


def error(url: str, query: str, timeout: float = 5.0) -> str:
    with pytest.raises(MetricSourceError) as caught:
        read(url, query, timeout)
    return caught.value.message


def test_one_series(prometheus: Prometheus) -> None:
    assert read(prometheus.url, "shop_error_ratio") == 0.25
    assert read(prometheus.url + "/", 'shop_requests_total{route="/cart"}') == 12.0


def test_an_aggregate_and_a_scalar(prometheus: Prometheus) -> None:
    assert read(prometheus.url, "sum(shop_requests_total)") == 48.0
    assert read(prometheus.url, "scalar(shop_error_ratio) * 100") == 25.0


def test_reads_the_latest_scrape(prometheus: Prometheus) -> None:
    prometheus.expose(EXPOSITION.replace("shop_inflight 3", "shop_inflight 4"))
    try:
        deadline = time.monotonic() + 5
        while (value := read(prometheus.url, "shop_inflight")) != 4.0:
            assert value == 3.0
            assert time.monotonic() < deadline, "the new value never showed"
            time.sleep(0.2)
    finally:
        prometheus.expose(EXPOSITION)


def test_several_series_are_an_error_that_names_them(prometheus: Prometheus) -> None:
    message = error(prometheus.url, "shop_requests_total")
    head = f'prometheus {prometheus.url} query "shop_requests_total": 4 series, expected 1: '
    assert message.startswith(head)
    assert 'shop_requests_total{instance="127.0.0.1:' in message
    assert 'job="shop", route="/api"}' in message
    assert message.endswith(" and 1 more; aggregate them into one, e.g. sum(...) or max(...)")


def test_empty_result(prometheus: Prometheus) -> None:
    assert error(prometheus.url, 'shop_error_ratio{job="nope"}') == (
        f'prometheus {prometheus.url} query "shop_error_ratio{{job="nope"}}": empty result,'
        f" no series matched (the metric may not exist yet, or the selector matches nothing)"
    )


def test_bad_query_range_vector_and_nan(prometheus: Prometheus) -> None:
    message = error(prometheus.url, "sum(shop_error_ratio")
    assert message.startswith(
        f'prometheus {prometheus.url} query "sum(shop_error_ratio": query failed (bad_data):'
    )
    assert "parse error" in message
    assert error(prometheus.url, "shop_error_ratio[10s]").endswith(
        ": the query gives a range vector; a metric needs one number (an instant vector or"
        " a scalar), e.g. rate(x[1m]) rather than x[1m]"
    )
    assert error(prometheus.url, "0/0") == (
        f'prometheus {prometheus.url} query "0/0": the value is NaN (no data, or 0/0)'
    )


def test_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert error(url, "up") == f'prometheus {url} query "up": connection refused'


def test_not_prometheus_and_timeout(http_server: Server) -> None:
    base = http_server.base
    assert error(base, "up") == f'prometheus {base} query "up": HTTP 404: no such page'
    http_server.routes["/api/v1/query"] = Route(200, b"<html>hello</html>", "text/html")
    assert error(base, "up") == (
        f'prometheus {base} query "up": HTTP 200, not a Prometheus API answer: <html>hello</html>'
    )
    # Answers after a minute (or when the test ends): the timeout must cut it short.
    http_server.routes["/api/v1/query"] = Route.json({"status": "success"}, delay=60)
    start = time.monotonic()
    assert error(base, "up", timeout=0.3) == f'prometheus {base} query "up": timed out after 0.3 s'
    assert time.monotonic() - start < 15
    path, _ = http_server.requests[-1]
    assert path == "/api/v1/query"


def test_judged_by_the_analysis(prometheus: Prometheus) -> None:
    spec = AnalysisSpec.from_dict(
        {
            "comparative": False,
            "min_requests": 1,
            "metrics": [
                {
                    "name": "checkout_error_rate",
                    "prometheus": {"url": prometheus.url, "query": "shop_error_ratio"},
                    "condition": "< 10%",
                },
                {
                    "name": "queue_depth",
                    "prometheus": {"url": prometheus.url, "query": "max(shop_queue_depth)"},
                    "condition": "<= 100",
                },
            ],
        }
    )
    analysis = Analysis(spec)
    analysis.observe(0.0, {"canary": ReleaseStats(0, 0)}, asyncio.run(read_metrics(spec)))
    verdict = analysis.observe(1.0, {"canary": ReleaseStats(5, 0)}, asyncio.run(read_metrics(spec)))
    assert verdict.decision is Decision.FAIL
    assert verdict.message == (
        "FAIL after 1s: checkout_error_rate 25% (prometheus); condition < 10%: FAIL"
    )
    assert verdict.checks[1].message == "queue_depth 7 (prometheus); condition <= 100: OK"
