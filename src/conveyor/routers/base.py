"""The `Router` protocol: how traffic reaches instances."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from conveyor.analysis.metrics import Histogram

if TYPE_CHECKING:
    from conveyor.config.models import ServiceConfig
    from conveyor.routers.tls import TlsFiles


@dataclass(frozen=True)
class RouteSpec:
    """One service's route inside an environment's listener."""

    service: str
    path: str = "/"  # path prefix; "/" matches everything
    host: str | None = None
    strip_prefix: bool = False


SERVER_ROUTE = "conveyor.server"  # not a service name conveyor.yml allows: no clash


def route_order(spec: RouteSpec) -> tuple[bool, int, bool, str]:
    """How the routers order routes: `conveyor server`'s (a host, every path) first, then
    the longest path prefix first; at equal length a host-specific route first."""
    return (spec.service != SERVER_ROUTE, -len(spec.path), spec.host is None, spec.service)


def route_specs(services: Mapping[str, ServiceConfig]) -> list[RouteSpec]:
    """The route of each service of a config that receives requests (workers have none),
    as the routers take them."""
    return [
        RouteSpec(
            service=name,
            path=svc.route.path,
            host=svc.route.host,
            strip_prefix=svc.route.strip_prefix,
        )
        for name, svc in services.items()
        if svc.route is not None
    ]


@dataclass(frozen=True)
class TrafficStats:
    """Requests seen by the data plane for one backend address.

    `requests`, the status classes and `latency` are cumulative: they only
    grow while the backend stays registered (a snapshot minus an earlier one
    is what happened in between). They may start again from zero when a
    backend is removed and registered again, or when the router's state is
    lost; `ReleaseStats.since` treats a counter that went down as a restart.
    `latency` is the histogram (ms, `DEFAULT_BOUNDS_MS`) of every request
    the data plane logged for the backend; None from a router without one.
    `p50_ms`..`p99_ms` are quantiles of a recent window of requests, for
    display.
    """

    address: str
    requests: int = 0
    status_2xx: int = 0
    status_3xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    latency: Histogram | None = None


class Router(Protocol):
    """Sends an environment's traffic to weighted backends (host:port addresses).

    A backend is registered with weight 0 (it receives nothing), weights are
    then changed atomically per service. All methods are idempotent.
    """

    async def ensure_environment(
        self,
        environment: str,
        listen: str,
        routes: list[RouteSpec],
        tls: TlsFiles | None = None,
    ) -> None:
        """Listen on `listen` and route each service; keeps existing backends.

        With `tls`, `listen` serves HTTPS with its certificate (loaded again when the
        files' content changed) and backends get `X-Forwarded-Proto: https`.
        """
        ...

    async def remove_environment(self, environment: str) -> None:
        """Stop listening for the environment and forget its routes."""
        ...

    async def register(self, environment: str, service: str, address: str) -> None:
        """Add a backend with weight 0 (no traffic yet)."""
        ...

    async def set_weights(self, environment: str, service: str, weights: dict[str, int]) -> None:
        """Set the weights of registered backends in one atomic change."""
        ...

    async def weights(self, environment: str, service: str) -> dict[str, int]:
        """Registered backends of a service and their weights."""
        ...

    async def drain(self, environment: str, service: str, address: str, timeout: float) -> int:
        """Set weight 0 and wait until in-flight requests finish or `timeout`.

        Returns the number of requests still in flight when it gave up (0 = drained).
        """
        ...

    async def remove(self, environment: str, service: str, address: str) -> None:
        """Forget a backend."""
        ...

    async def traffic_stats(self, environment: str, service: str) -> dict[str, TrafficStats]:
        """Per-backend cumulative requests, status classes and latency histogram.

        Also the latency quantiles of recent requests. Every registered
        backend is reported, with zeros when it had no traffic.
        """
        ...
