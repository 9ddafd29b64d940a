"""`GET /metrics`: the Prometheus exposition of `conveyor server` (prometheus-client).

Everything is read at scrape time from what Conveyor records (the store) and from the
routers' own counters, into a registry of its own made for the request: deploys run
in other processes (the CLI, the server's workers), so nothing is counted in this one.
A scrape needs a token like any other read (viewer or above); a token limited to some
environments gets the series of those only.

- `conveyor_deployments_total{environment, kind, status}`: finished deployments;
- `conveyor_deployment_duration_seconds{environment, kind}`: their durations (histogram);
- `conveyor_analysis_verdicts_total{environment, analysis, verdict}`: final verdicts of
  analyses (pass, fail, inconclusive);
- `conveyor_instances{environment, service, release, state}`: instances by state;
- `conveyor_requests_total{environment, service, release, code}`: requests through the
  router per release and status class (`2xx`..`5xx`), from the router's counters;
- `conveyor_alert_firing{environment, alert, kind}`: 1 while an alert of `monitors:`
  fires, else 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from conveyor.store.records import UNFINISHED_STATUSES, TokenRecord

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime

log = logging.getLogger("conveyor.server")
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
CODES = ("2xx", "3xx", "4xx", "5xx")


@dataclass
class Readings:
    """What one scrape read: store records and router counters of the environments."""

    deployments: list[Any] = field(default_factory=list)
    verdicts: list[tuple[str, str, str]] = field(default_factory=list)
    instances: list[Any] = field(default_factory=list)
    alerts: list[Any] = field(default_factory=list)
    # (environment, service, release, code) -> requests
    requests: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)


class ConveyorCollector:
    """The metrics of `readings`, as prometheus-client collects them."""

    def __init__(self, readings: Readings) -> None:
        self.readings = readings

    def collect(self) -> Iterator[Metric]:
        r = self.readings
        counts: Counter[tuple[str, ...]] = Counter()
        durations: dict[tuple[str, str], list[float]] = defaultdict(list)
        for d in r.deployments:
            if d.status in UNFINISHED_STATUSES or d.finished_at is None:
                continue
            counts[(d.environment, d.kind, d.status)] += 1
            durations[(d.environment, d.kind)].append(
                (d.finished_at - d.started_at).total_seconds()
            )
        deployments = CounterMetricFamily(
            "conveyor_deployments",
            "Finished deployments, by environment, kind and status.",
            labels=["environment", "kind", "status"],
        )
        for labels, count in sorted(counts.items()):
            deployments.add_metric(list(labels), count)
        yield deployments

        histogram = HistogramMetricFamily(
            "conveyor_deployment_duration_seconds",
            "How long finished deployments took.",
            labels=["environment", "kind"],
        )
        for labels, values in sorted(durations.items()):
            buckets = [(f"{b:g}", sum(1 for v in values if v <= b)) for b in DURATION_BUCKETS]
            buckets.append(("+Inf", len(values)))
            histogram.add_metric(list(labels), buckets, sum(values))
        yield histogram

        verdicts = CounterMetricFamily(
            "conveyor_analysis_verdicts",
            "Final verdicts of analyses (pass, fail, inconclusive).",
            labels=["environment", "analysis", "verdict"],
        )
        for labels, count in sorted(Counter(r.verdicts).items()):
            verdicts.add_metric(list(labels), count)
        yield verdicts

        instances = GaugeMetricFamily(
            "conveyor_instances",
            "Instances Conveyor runs, by state (serving, warm, ...).",
            labels=["environment", "service", "release", "state"],
        )
        states = Counter((i.environment, i.service, i.release_id, i.state) for i in r.instances)
        for labels, count in sorted(states.items()):
            instances.add_metric(list(labels), count)
        yield instances

        requests = CounterMetricFamily(
            "conveyor_requests",
            "Requests through the router per release and status class (the router's counters).",
            labels=["environment", "service", "release", "code"],
        )
        for labels, count in sorted(r.requests.items()):
            requests.add_metric(list(labels), count)
        yield requests

        alerts = GaugeMetricFamily(
            "conveyor_alert_firing",
            "1 while an alert of monitors: fires, else 0.",
            labels=["environment", "alert", "kind"],
        )
        for a in r.alerts:
            alerts.add_metric([a.environment, a.name, a.kind], 1.0 if a.state == "firing" else 0.0)
        yield alerts


async def _router_requests(rt: Runtime, environment: str, readings: Readings) -> None:
    """Add the router's counters of `environment`, summed per release."""
    releases = {
        i.address: (i.service, i.release_id)
        for i in readings.instances
        if i.environment == environment and i.address
    }
    services = {service for service, _ in releases.values()}
    if not services:
        return
    router = rt.router_for(environment)
    for service in sorted(services):
        try:
            traffic = await router.traffic_stats(environment, service)
        except Exception as error:  # a router that is down has nothing to say: no series
            log.info("/metrics: no counters of %s/%s: %s", environment, service, error)
            continue
        for address, stats in traffic.items():
            known = releases.get(address)
            if known is None:
                continue
            for code, value in zip(
                CODES,
                (stats.status_2xx, stats.status_3xx, stats.status_4xx, stats.status_5xx),
                strict=True,
            ):
                readings.requests[(environment, known[0], known[1], code)] += value


def read(rt: Runtime, environments: Sequence[str]) -> Readings:
    """Everything one scrape shows, of `environments`."""
    store = rt.store
    wanted = set(environments)
    readings = Readings(
        deployments=[d for d in store.list_deployments() if d.environment in wanted],
        verdicts=[v for v in store.analysis_verdicts() if v[0] in wanted],
        instances=[i for i in store.list_instances() if i.environment in wanted],
        alerts=[a for a in store.list_alerts() if a.environment in wanted],
    )

    async def routers() -> None:
        for environment in environments:
            await _router_requests(rt, environment, readings)

    asyncio.run(routers())
    return readings


def exposition(readings: Readings) -> bytes:
    """The text format of `readings`, from a registry of its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConveyorCollector(readings))
    data: bytes = generate_latest(registry)
    return data


def add_metrics(app: FastAPI, caller: Any) -> None:
    """Serve `GET /metrics` on `app`; `caller` is the dependency that checks the token."""

    @app.get(
        "/metrics",
        tags=["read"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics"}},
    )
    # Not `Annotated[..., Depends(caller)]`: `caller` is not a name of this module, where
    # FastAPI evaluates the (postponed) annotations.
    def metrics(request: Request, token: TokenRecord = Depends(caller)) -> Response:
        """The Prometheus exposition of the environments the token may see."""
        from conveyor.server import access
        from conveyor.server.access import Action
        from conveyor.server.app import ApiError

        why = access.refusal(token, Action.READ, None)
        if why is not None:
            raise ApiError(403, f"forbidden: {why}")
        rt = request.app.state.control.runtime(token.name)
        names = access.visible(token, list(rt.loaded.config.environments))
        body = exposition(read(rt, names))
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)
