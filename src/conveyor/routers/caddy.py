"""`Router` on a real Caddy, driven through its admin API on a unix socket.

Layout of the Caddy config (one environment = one HTTP server):

* `apps.http.servers.<env>` listens on the environment's address, automatic
  HTTPS off. One route per service, `@id` = `conveyor-<env>-<service>`,
  matched by path prefix (`/api` matches `/api` and `/api/*`) and optional
  host, longest prefix first, then a catch-all 404 route. With `tls:`, a
  connection policy selects the certificate tagged `conveyor-tls-<env>`,
  loaded from the user's PEM files by `apps.tls.certificates.load_files`.
* A service route's handlers: two `log_append` (route id and
  `{http.reverse_proxy.upstream.address}` into the access log), an optional
  `rewrite` with `strip_path_prefix`, then the backends:
  - some backend has a weight: one `reverse_proxy` with every registered
    backend as an upstream and `weighted_round_robin` weights (Caddy 2.11
    sends nothing to weight 0, checked with real traffic);
  - all weights are 0 (Caddy refuses such a `weighted_round_robin`): a
    `static_response` 503 "no healthy instance of <service>", followed by a
    `reverse_proxy` that is never reached (the 503 ends the chain) and only
    holds the registered backends, so that they stay in Caddy's live config
    and Caddy keeps counting their in-flight requests, which `drain` waits
    on (Caddy drops an upstream's counter once no config names it);
  - no backend: the 503 alone.
* The access log of the server goes to `<state_dir>/access-<env>.log` (JSON).

So the registered backends and their weights are read back from Caddy's live
config and survive a new Conveyor process and a Caddy restart (`--resume`).
The only local state is what Caddy cannot hold, the traffic counters, in
`<state_dir>/traffic-<env>.json`:

* how far the access log was read (inode, offset; rolled copies are
  finished before the new file is read);
* per (route, backend address): cumulative requests, status classes
  (2xx..5xx) and a latency histogram (`DEFAULT_BOUNDS_MS`), all counted from
  the same access lines, so the histogram's total is the request count;
* per route: the last `TRAFFIC_WINDOW` (address, ms) requests, for the
  p50/p95/p99 shown to people (two base64 arrays, cheap to load and save).

`traffic_stats` reads the lines appended since the last call (by any
Conveyor process) and saves counters and offset together (atomically), so a
new router object or process continues the counts and no line is counted
twice. The file stays bounded: counters are kept only for the backends
Caddy's config registers (read after the log, see
`_TrafficState.keep_only`), and `remove` drops a backend's counters at once.
So a backend removed and registered again later (same address) starts again
from zero, which the canary analysis treats as a counter reset. A lost or
damaged file (or one of an older version) makes the counts start again from
the lines of the current access log.
The access lines are read without a full JSON parse (`access_fields`); at
1,000 new lines and a full window a call costs ~10-20 ms.

Every change is one admin request: weight changes PATCH the service's route
by `@id`, environment changes POST the whole config once; both with
`If-Match`, so two Conveyor processes never overwrite each other.

Caveats found on Caddy 2.11.7 (see tests/routers/test_caddy.py):

* A config that fails to *provision* a `reverse_proxy` (e.g. all weights 0,
  a malformed upstream) drops its upstreams from Caddy's in-flight request
  counters (`/reverse_proxy/upstreams`) for good. So this module validates
  everything before sending and never sends an all-zero weighted policy.
* Every config change is a graceful reload: the old server closes its *idle*
  keep-alive connections at once, and a client that sends its next request
  on one at that instant gets no response. HTTP clients are expected to retry
  idempotent requests then (RFC 9112 §9.3.1; browsers and Go do, httpx and
  http.client do not). `grace_period`, `shutdown_delay` and `idle_timeout` do
  not change it (measured). Listeners are re-bound with SO_REUSEPORT on each
  reload; new connections queued on the old socket are reset unless
  `net.ipv4.tcp_migrate_req=1` (Linux >= 5.14).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from conveyor.config.hosts import LOCAL_HOST
from conveyor.errors import RouterError
from conveyor.routers.base import RouteSpec, TrafficStats, route_order
from conveyor.routers.caddy_process import atomic_write_text
from conveyor.routers.traffic import LogPosition, Tally, Window, valid_latency

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.routers.base import Router
    from conveyor.routers.tls import TlsFiles

__all__ = ["CaddyRouter", "build"]


def build(rt: Runtime, environment: str) -> CaddyRouter:
    """The `caddy` plugin (`conveyor.plugins`): the home's Caddy, which serves every
    environment whose router runs here, or the Caddy on the environment's `router_host`."""
    if rt.environment(environment).router_host != LOCAL_HOST:
        from conveyor.routers.caddy_remote import build_remote

        return build_remote(rt, environment)
    return CaddyRouter(rt.paths.caddy_admin_socket, rt.paths.caddy_dir)


_ADMIN_ATTEMPTS = 4
ADMIN_LOCK = ".admin.lock"  # serializes config changes across tasks and processes
TRAFFIC_WINDOW = 10_000  # requests kept per route for traffic_stats
ACCESS_LOG_ROLL_MB = 20  # Caddy rolls the access log at this size...
ACCESS_LOG_ROLL_KEEP = 2  # ...and keeps this many rolled files

_HINT_NOT_RUNNING = (
    "Caddy does not seem to run; check it with `conveyor status` "
    "(it is supervised as the `caddy` program)"
)
_ENV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOSTPORT_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
_LISTEN_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):(?P<port>\d{1,5})$")


# ---------------------------------------------------------------------------
# Names


def route_id(environment: str, service: str) -> str:
    """The `@id` of a service's route: `conveyor-<env>-<service>`."""
    return f"conveyor-{environment}-{service}"


def fallback_route_id(environment: str) -> str:
    """The `@id` of the catch-all 404 route that ends an environment's routes."""
    return f"conveyor-{environment}--fallback"


def logger_name(environment: str) -> str:
    """Name of the Caddy logger that writes the environment's access log."""
    return f"conveyor_{environment}"


# ---------------------------------------------------------------------------
# Pure config builders


def backend_handlers(
    environment: str, service: str, backends: Mapping[str, int]
) -> list[dict[str, Any]]:
    """The handlers that end a service route and express its backends (address -> weight).

    >>> [h["handler"] for h in backend_handlers("prod", "api", {"10.0.0.1:80": 1})]
    ['reverse_proxy']
    >>> [h["handler"] for h in backend_handlers("prod", "api", {"10.0.0.1:80": 0})]
    ['static_response', 'reverse_proxy']
    >>> [h["handler"] for h in backend_handlers("prod", "api", {})]
    ['static_response']
    """
    upstreams = [{"dial": address} for address in backends]
    if any(weight > 0 for weight in backends.values()):
        return [
            {
                "handler": "reverse_proxy",
                "upstreams": upstreams,
                "load_balancing": {
                    "selection_policy": {
                        "policy": "weighted_round_robin",
                        "weights": list(backends.values()),
                    },
                    # a backend that refuses the connection is skipped (nothing was sent)
                    "retries": 2,
                },
            }
        ]
    unavailable: dict[str, Any] = {
        "handler": "static_response",
        "status_code": 503,
        "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
        "body": f"no healthy instance of {service}\n",
    }
    if not backends:
        return [unavailable]
    # Never reached (the 503 ends the chain): keeps the registered backends
    # in the live config, and so their in-flight counters in Caddy.
    registry = {
        "@id": f"{route_id(environment, service)}-registered",
        "handler": "reverse_proxy",
        "upstreams": upstreams,
    }
    return [unavailable, registry]


def build_route(environment: str, spec: RouteSpec, backends: Mapping[str, int]) -> dict[str, Any]:
    """One service's route: matchers, access-log fields, optional prefix strip, backends."""
    matcher: dict[str, Any] = {}
    if spec.path != "/":
        matcher["path"] = [spec.path, spec.path + "/*"]
    if spec.host:
        matcher["host"] = [spec.host]
    handlers: list[dict[str, Any]] = [
        {
            "handler": "log_append",
            "key": "conveyor_route",
            "value": route_id(environment, spec.service),
        },
        {
            "handler": "log_append",
            "key": "upstream",
            "value": "{http.reverse_proxy.upstream.address}",
        },
    ]
    if spec.strip_prefix and spec.path != "/":
        handlers.append({"handler": "rewrite", "strip_path_prefix": spec.path})
    handlers.extend(backend_handlers(environment, spec.service, backends))
    route: dict[str, Any] = {"@id": route_id(environment, spec.service)}
    if matcher:
        route["match"] = [matcher]
    route["handle"] = handlers
    route["terminal"] = True
    return route


def order_routes(routes: Iterable[RouteSpec]) -> list[RouteSpec]:
    """Longest path prefix first; at equal length a host-specific route first.

    >>> specs = [RouteSpec("web"), RouteSpec("api", "/api"), RouteSpec("v2", "/api/v2"),
    ...          RouteSpec("adm", "/", "a.example")]
    >>> [r.service for r in order_routes(specs)]
    ['v2', 'api', 'adm', 'web']
    """
    return sorted(routes, key=route_order)


def tls_tag(environment: str) -> str:
    """The tag of the certificate an environment's server presents (`tls:`)."""
    return f"conveyor-tls-{environment}"


def build_certificate(environment: str, tls: TlsFiles) -> dict[str, Any]:
    """The `apps.tls.certificates.load_files` entry of an environment's `tls:` files.

    The digest tag changes with the files' content, so a renewed certificate makes
    the config differ and Caddy reads the files again.
    """
    return {
        "certificate": str(tls.certificate),
        "key": str(tls.key),
        "format": "pem",
        "tags": [tls_tag(environment), f"conveyor-digest-{tls.digest}"],
    }


def build_server(
    environment: str,
    listen: str,
    routes: list[RouteSpec],
    backends: Mapping[str, Mapping[str, int]],
    tls: TlsFiles | None = None,
) -> dict[str, Any]:
    """The Caddy server of an environment; `backends` maps service -> address -> weight.

    With `tls`, it serves HTTPS with the certificate tagged `tls_tag(environment)`
    (automatic HTTPS stays off: no ACME, no redirect); Caddy's reverse proxy then
    sends `X-Forwarded-Proto: https` to the backends by itself.
    """
    built = [
        build_route(environment, spec, backends.get(spec.service, {}))
        for spec in order_routes(routes)
    ]
    built.append(
        {
            "@id": fallback_route_id(environment),
            "handle": [
                {
                    "handler": "static_response",
                    "status_code": 404,
                    "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
                    "body": f"no route for this request in environment {environment}\n",
                }
            ],
        }
    )
    server: dict[str, Any] = {
        "listen": [listen],
        "automatic_https": {"disable": True},
        "logs": {"default_logger_name": logger_name(environment)},
        "routes": built,
    }
    if tls is not None:
        server["tls_connection_policies"] = [
            {"certificate_selection": {"any_tag": [tls_tag(environment)]}}
        ]
    return server


def build_logger(access_log: str | Path, environment: str) -> dict[str, Any]:
    """The logger that writes the environment's access log as JSON lines."""
    return {
        "writer": {
            "output": "file",
            "filename": str(access_log),
            "roll_size_mb": ACCESS_LOG_ROLL_MB,
            "roll_keep": ACCESS_LOG_ROLL_KEEP,
            "roll_gzip": False,
        },
        "encoder": {"format": "json"},
        "level": "INFO",
        "include": [f"http.log.access.{logger_name(environment)}"],
    }


_PREFIX_HANDLERS = frozenset({"log_append", "rewrite"})


def backends_of_route(route: Mapping[str, Any]) -> dict[str, int]:
    """Backends (address -> weight) expressed by a route's handlers."""
    for handler in route.get("handle") or []:
        if handler.get("handler") != "reverse_proxy":
            continue
        dials = [str(u.get("dial", "")) for u in handler.get("upstreams") or []]
        policy = (handler.get("load_balancing") or {}).get("selection_policy") or {}
        if policy.get("policy") != "weighted_round_robin":
            return dict.fromkeys(dials, 0)  # the registry behind the 503
        weights = policy.get("weights") or []
        return {d: int(weights[i]) if i < len(weights) else 1 for i, d in enumerate(dials)}
    return {}


def with_backends(
    environment: str, route: Mapping[str, Any], service: str, backends: Mapping[str, int]
) -> dict[str, Any]:
    """A copy of `route` whose last handlers express `backends`."""
    new = copy.deepcopy(dict(route))
    prefix = [h for h in new.get("handle", []) if h.get("handler") in _PREFIX_HANDLERS]
    new["handle"] = [*prefix, *backend_handlers(environment, service, backends)]
    return new


def normalize_upstream(value: object) -> str | None:
    """`tcp/127.0.0.1:8001` (Caddy's placeholder) -> `127.0.0.1:8001`; empty -> None."""
    if not isinstance(value, str) or not value:
        return None
    return value[4:] if value.startswith("tcp/") else value


# ---------------------------------------------------------------------------
# Validation


def _check_environment(environment: str) -> None:
    if not _ENV_RE.match(environment):
        raise RouterError(
            f"caddy: environment name {environment!r} cannot be used as a Caddy server name",
            hint="use letters, digits, '-' and '_' only (at most 63 characters)",
        )


def _check_service(service: str) -> None:
    if not _SERVICE_RE.match(service):
        raise RouterError(
            f"caddy: service name {service!r} cannot be used in a route id",
            hint="use letters, digits, '.', '-' and '_' only (at most 63 characters)",
        )


def _check_address(environment: str, service: str, address: str) -> None:
    match = _HOSTPORT_RE.match(address)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise RouterError(
            f"caddy: backend address {address!r} of {environment}/{service} is not host:port",
            hint="register instances by their listen address, e.g. 127.0.0.1:8001",
        )


def _check_listen(environment: str, listen: str) -> None:
    match = _LISTEN_RE.match(listen)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise RouterError(
            f"caddy: listen address {listen!r} of environment {environment} is not [host]:port",
            hint="set the environment's listen address to e.g. 127.0.0.1:8080 or :80",
        )


def _normalize_routes(environment: str, routes: list[RouteSpec]) -> list[RouteSpec]:
    seen: set[str] = set()
    normalized: list[RouteSpec] = []
    for spec in routes:
        _check_service(spec.service)
        if spec.service in seen:
            raise RouterError(
                f"caddy: service {spec.service!r} is routed twice in environment {environment}",
                hint="give each service a single route",
            )
        seen.add(spec.service)
        path = spec.path
        if not path.startswith("/") or "*" in path or any(c.isspace() for c in path):
            raise RouterError(
                f"caddy: route path {path!r} of {environment}/{spec.service} is not a path prefix",
                hint="use a prefix starting with '/', e.g. /api (no wildcards)",
            )
        path = path.rstrip("/") or "/"
        normalized.append(RouteSpec(spec.service, path, spec.host or None, spec.strip_prefix))
    return normalized


def _port_is_free(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise RouterError(
                f"caddy: cannot listen on {listen}: {exc.strerror}",
                hint="use an address of this host, e.g. 127.0.0.1:8080",
            ) from None
    return True


# ---------------------------------------------------------------------------
# The router


class CaddyRouter:
    """`Router` backed by a running Caddy (see the module docstring for the config layout)."""

    def __init__(self, admin_socket: Path, state_dir: Path, *, timeout: float = 10.0) -> None:
        self.admin_socket = Path(admin_socket)
        self.state_dir = Path(state_dir).absolute()  # Caddy writes the access log here
        self.timeout = timeout

    # -- where Caddy is: overridden by a Caddy on another host (caddy_remote) --

    @property
    def admin_name(self) -> str:
        """The admin API, as error messages name it."""
        return str(self.admin_socket)

    def access_log(self, environment: str) -> Path:
        """Where Caddy writes the environment's access log (and where it is read)."""
        return self.state_dir / f"access-{environment}.log"

    def caddy_access_log(self, environment: str) -> str:
        """The access log's path as Caddy's config names it (on Caddy's host)."""
        return str(self.access_log(environment))

    async def fresh_access_log(self, environment: str) -> Path:
        """The access log to count, with every line Caddy has written until now."""
        return self.access_log(environment)

    async def forget_access_logs(self, environment: str) -> None:
        log = self.access_log(environment)
        for path in [log, *rolled_logs(log)]:
            path.unlink(missing_ok=True)

    async def listen_is_free(self, listen: str) -> bool:
        """Whether a program could bind `listen` on Caddy's host now."""
        return _port_is_free(listen)

    def _traffic_file(self, environment: str) -> Path:
        return self.state_dir / f"traffic-{environment}.json"

    # -- admin API -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _admin(self) -> AsyncIterator[httpx.AsyncClient]:
        # Caddy restarts its admin server after each config load, which closes
        # pooled connections: never reuse one (a refused connect is retried).
        transport = httpx.AsyncHTTPTransport(
            uds=str(self.admin_socket),
            retries=2,
            limits=httpx.Limits(max_keepalive_connections=0),
            verify=False,  # plain HTTP on a unix socket; loading CA certificates costs ~40 ms
        )
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost", timeout=self.timeout, trust_env=False
        ) as client:
            yield client

    async def _call(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        body: Any = None,
        if_match: str | None = None,
        what: str,
        allow: tuple[int, ...] = (),
    ) -> httpx.Response:
        headers = {"If-Match": if_match} if if_match else {}
        try:
            for attempt in range(_ADMIN_ATTEMPTS):
                try:
                    if body is None:
                        response = await client.request(method, path, headers=headers)
                    else:
                        response = await client.request(method, path, json=body, headers=headers)
                    break
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    # Caddy restarts its admin server after each config load and
                    # may drop a request that raced with it. Sending again is
                    # safe: changes carry If-Match, so a change that did land
                    # comes back as 412 and is re-read by the caller.
                    if attempt == _ADMIN_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise RouterError(
                f"caddy: cannot reach the admin API on {self.admin_name} "
                f"while trying to {what}: {exc}",
                hint=_HINT_NOT_RUNNING,
            ) from None
        except httpx.TimeoutException:
            raise RouterError(
                f"caddy: the admin API on {self.admin_name} did not answer within "
                f"{self.timeout:g}s while trying to {what}",
                hint=_HINT_NOT_RUNNING + "; a hung Caddy needs a restart",
            ) from None
        except httpx.HTTPError as exc:
            raise RouterError(
                f"caddy: the admin API on {self.admin_name} failed while trying to {what}: {exc}",
                hint=_HINT_NOT_RUNNING,
            ) from None
        if response.status_code < 400 or response.status_code in allow:
            return response
        detail = _error_detail(response)
        hint = (
            "the change was refused by Caddy and nothing was applied; fix the cause above and retry"
            if response.status_code < 500
            else "Caddy could not load the new config and kept the previous one; see Caddy's log "
            "(`conveyor status`) and retry"
        )
        raise RouterError(
            f"caddy: {method} {path} failed with HTTP {response.status_code} "
            f"while trying to {what}: {detail}",
            hint=hint,
        )

    async def _get_json(
        self, client: httpx.AsyncClient, path: str, *, what: str
    ) -> tuple[Any, str | None]:
        response = await self._call(client, "GET", path, what=what)
        return response.json(), response.headers.get("etag")

    # -- locking -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _locked(self, name: str, wait: float = 30.0) -> AsyncIterator[None]:
        """An inter-process lock on a file in state_dir (CLI processes may overlap)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RouterError(
                            f"caddy: another Conveyor process holds {self.state_dir / name} "
                            f"for more than {wait:g}s",
                            hint="wait for the other command to finish, then retry",
                        ) from None
                    await asyncio.sleep(0.02)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    # -- reading a service ---------------------------------------------------

    async def _service(
        self, client: httpx.AsyncClient, environment: str, service: str
    ) -> tuple[dict[str, Any], str | None, dict[str, int]]:
        """The service's route, its ETag, and its registered backends (address -> weight)."""
        rid = route_id(environment, service)
        response = await self._call(
            client,
            "GET",
            f"/id/{rid}",
            what=f"read the route of {environment}/{service}",
            allow=(404,),
        )
        if response.status_code == 404:
            server = await self._call(
                client,
                "GET",
                f"/config/apps/http/servers/{environment}",
                what=f"look up environment {environment}",
                allow=(400, 404),
            )
            if server.status_code >= 400 or server.json() is None:
                raise RouterError(
                    f"caddy: environment {environment} is not routed by Caddy "
                    f"(no server {environment!r})",
                    hint="deploy the environment first (ensure_environment creates its server)",
                )
            raise RouterError(
                f"caddy: service {service} has no route in environment {environment} "
                f"(no @id {rid!r})",
                hint=f"add {service} to the environment's routes in conveyor.yml and deploy",
            )
        route = response.json()
        return route, response.headers.get("etag"), backends_of_route(route)

    async def _apply_backends(
        self,
        environment: str,
        service: str,
        change: Callable[[dict[str, int]], dict[str, int]],
        *,
        what: str,
    ) -> dict[str, int]:
        """Read-modify-write of one service's backends: one PATCH by @id, If-Match guarded.

        `change(backends) -> new backends` raises RouterError to refuse.
        """
        rid = route_id(environment, service)
        async with self._locked(ADMIN_LOCK), self._admin() as client:
            for _attempt in range(5):
                route, etag, current = await self._service(client, environment, service)
                new = change(dict(current))
                new_route = with_backends(environment, route, service, new)
                if new_route == route:
                    return new
                response = await self._call(
                    client,
                    "PATCH",
                    f"/id/{rid}",
                    body=new_route,
                    if_match=etag,
                    what=what,
                    allow=(412,),
                )
                if response.status_code != 412:
                    return new
                # someone changed the route meanwhile: read it again
        raise RouterError(
            f"caddy: the route of {environment}/{service} kept changing while trying to {what}",
            hint="another process is changing the same service; retry when it is done",
        )

    # -- Router protocol -----------------------------------------------------

    async def ensure_environment(
        self,
        environment: str,
        listen: str,
        routes: list[RouteSpec],
        tls: TlsFiles | None = None,
    ) -> None:
        """Listen on `listen` (HTTPS with `tls`) and route each service; keeps backends.

        One config load (the whole config, If-Match guarded) when something
        differs, none when the environment is already as asked.
        """
        _check_environment(environment)
        _check_listen(environment, listen)
        specs = _normalize_routes(environment, routes)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        async with self._locked(ADMIN_LOCK), self._admin() as client:
            for _attempt in range(5):
                config, etag = await self._get_json(client, "/config/", what="read Caddy's config")
                config = config if isinstance(config, dict) else {}
                wanted = copy.deepcopy(config)
                servers = (
                    wanted.setdefault("apps", {}).setdefault("http", {}).setdefault("servers", {})
                )
                existing = servers.get(environment)
                await self._check_listen_available(environment, listen, servers)
                existing_routes = {r.get("@id"): r for r in (existing or {}).get("routes") or []}
                backends: dict[str, dict[str, int]] = {}
                for spec in specs:
                    backends[spec.service] = backends_of_route(
                        existing_routes.get(route_id(environment, spec.service), {})
                    )
                servers[environment] = build_server(environment, listen, specs, backends, tls)
                _set_certificate(
                    wanted,
                    environment,
                    None if tls is None else build_certificate(environment, tls),
                )
                _ensure_logger(
                    wanted,
                    environment,
                    build_logger(self.caddy_access_log(environment), environment),
                )
                if wanted == config:
                    return
                response = await self._call(
                    client,
                    "POST",
                    "/config/",
                    body=wanted,
                    if_match=etag,
                    what=f"configure environment {environment} on {listen}",
                    allow=(412,),
                )
                if response.status_code != 412:
                    return
                # changed by someone else meanwhile: read it again
        raise RouterError(
            f"caddy: Caddy's config kept changing while configuring environment {environment}",
            hint="another process is changing Caddy's config; retry when it is done",
        )

    async def _check_listen_available(
        self, environment: str, listen: str, servers: Mapping[str, Any]
    ) -> None:
        """Refuse a listen address Caddy could not bind: a failed load has side effects."""
        for name, other in servers.items():
            if name != environment and listen in (other.get("listen") or []):
                raise RouterError(
                    f"caddy: {listen} is already used by Caddy server {name!r}; "
                    f"environment {environment} cannot listen there too",
                    hint="give each environment its own listen address in conveyor.yml",
                )
        existing = servers.get(environment) or {}
        if listen not in (existing.get("listen") or []) and not await self.listen_is_free(listen):
            raise RouterError(
                f"caddy: {listen} is already in use by another program; "
                f"environment {environment} cannot listen there",
                hint=f"stop the program that listens on {listen} or change the "
                "environment's listen address",
            )

    async def remove_environment(self, environment: str) -> None:
        """Stop listening for the environment and forget its routes, backends and traffic."""
        _check_environment(environment)
        async with self._locked(ADMIN_LOCK), self._admin() as client:
            for _attempt in range(5):
                config, etag = await self._get_json(client, "/config/", what="read Caddy's config")
                config = config if isinstance(config, dict) else {}
                wanted = copy.deepcopy(config)
                servers = ((wanted.get("apps") or {}).get("http") or {}).get("servers") or {}
                servers.pop(environment, None)
                _set_certificate(wanted, environment, None)
                _drop_logger(wanted, environment)
                if wanted != config:
                    response = await self._call(
                        client,
                        "POST",
                        "/config/",
                        body=wanted,
                        if_match=etag,
                        what=f"remove environment {environment}",
                        allow=(412,),
                    )
                    if response.status_code == 412:
                        continue
                break
            else:
                raise RouterError(
                    f"caddy: Caddy's config kept changing while removing environment {environment}",
                    hint="another process is changing Caddy's config; retry when it is done",
                )
        self._traffic_file(environment).unlink(missing_ok=True)
        await self.forget_access_logs(environment)

    async def register(self, environment: str, service: str, address: str) -> None:
        """Add a backend with weight 0 (no traffic yet); a registered backend keeps its weight."""
        _check_environment(environment)
        _check_service(service)
        _check_address(environment, service, address)

        def change(backends: dict[str, int]) -> dict[str, int]:
            backends.setdefault(address, 0)
            return backends

        await self._apply_backends(
            environment, service, change, what=f"register {address} for {environment}/{service}"
        )

    async def set_weights(self, environment: str, service: str, weights: dict[str, int]) -> None:
        """Set the weights of registered backends in one atomic change (one PATCH).

        Backends not named keep their weight. All weights 0 makes the service
        answer 503 "no healthy instance of <service>".
        """
        _check_environment(environment)
        _check_service(service)
        for address, weight in weights.items():
            if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                raise RouterError(
                    f"caddy: weight {weight!r} for {address} of {environment}/{service} "
                    "is not a whole number >= 0",
                    hint="weights are relative shares such as 0, 1, 3 or 100",
                )

        def change(backends: dict[str, int]) -> dict[str, int]:
            unknown = sorted(set(weights) - set(backends))
            if unknown:
                raise RouterError(
                    f"caddy: {', '.join(unknown)} is not registered for {environment}/{service}",
                    hint="register the instance before giving it a weight",
                )
            backends.update(weights)
            return backends

        await self._apply_backends(
            environment,
            service,
            change,
            what=f"set weights {weights} for {environment}/{service}",
        )

    async def weights(self, environment: str, service: str) -> dict[str, int]:
        """Registered backends of a service and their weights (read from Caddy's live config)."""
        _check_environment(environment)
        _check_service(service)
        async with self._admin() as client:
            _, _, backends = await self._service(client, environment, service)
        return backends

    async def drain(self, environment: str, service: str, address: str, timeout: float) -> int:
        """Set weight 0 and wait until in-flight requests finish or `timeout`.

        In-flight requests are Caddy's own counters (`/reverse_proxy/upstreams`),
        which survive config reloads. Returns the number still in flight when
        it gave up (0 = drained).
        """
        _check_environment(environment)
        _check_service(service)
        _check_address(environment, service, address)

        def change(backends: dict[str, int]) -> dict[str, int]:
            if address in backends:
                backends[address] = 0
            return backends

        await self._apply_backends(
            environment, service, change, what=f"drain {address} of {environment}/{service}"
        )
        deadline = time.monotonic() + max(timeout, 0.0)
        # A request the old config accepted just before the reload may not be
        # counted yet: ask for two idle readings in a row.
        idle_readings = 0
        async with self._admin() as client:
            while True:
                in_flight = await self._in_flight(client, address)
                idle_readings = idle_readings + 1 if in_flight == 0 else 0
                if idle_readings >= 2:
                    return 0
                if time.monotonic() >= deadline:
                    return in_flight
                await asyncio.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))

    async def _in_flight(self, client: httpx.AsyncClient, address: str) -> int:
        upstreams, _ = await self._get_json(
            client, "/reverse_proxy/upstreams", what=f"count requests in flight to {address}"
        )
        for upstream in upstreams or []:
            if normalize_upstream(upstream.get("address")) == address:
                return int(upstream.get("num_requests", 0))
        # Caddy only counts for upstreams its live config names; this module
        # keeps every registered backend named, so absent means never proxied to.
        return 0

    async def remove(self, environment: str, service: str, address: str) -> None:
        """Forget a backend (it stops receiving traffic at once)."""
        _check_environment(environment)
        _check_service(service)

        def change(backends: dict[str, int]) -> dict[str, int]:
            backends.pop(address, None)
            return backends

        await self._apply_backends(
            environment, service, change, what=f"remove {address} from {environment}/{service}"
        )
        # Its counters go with it (registered again later, it starts from zero);
        # the lines logged until now are counted first, so that none is left
        # to be counted for a later registration of the same address.
        traffic = self._traffic_file(environment)
        if traffic.exists():
            async with self._locked(f".traffic-{environment}.lock"):
                log = await self.fresh_access_log(environment)
                state = await asyncio.to_thread(self._read_traffic, environment, log)
                state.forget(route_id(environment, service), address)
                await asyncio.to_thread(state.save, traffic)

    async def traffic_stats(self, environment: str, service: str) -> dict[str, TrafficStats]:
        """Per-backend cumulative requests, status classes and latency histogram.

        Counted from the environment's access log (each line carries the
        route and the upstream address), incrementally: every call reads the
        lines appended since the previous one (by any Conveyor process) and
        adds them to the counters kept in `<state_dir>/traffic-<env>.json`.
        Requests, status classes and the histogram come from the same lines,
        so `latency.total == requests`. `p50_ms`..`p99_ms` are quantiles of
        the route's last `TRAFFIC_WINDOW` requests.

        Reports the backends registered in Caddy's config, with zeros when
        they had no traffic; the counters of a backend no longer registered
        are forgotten (see `remove`). When Caddy cannot be asked, the
        backends with counters are reported.
        """
        _check_environment(environment)
        _check_service(service)
        rid = route_id(environment, service)
        traffic = self._traffic_file(environment)
        async with self._locked(f".traffic-{environment}.lock"):
            log = await self.fresh_access_log(environment)
            state = await asyncio.to_thread(self._read_traffic, environment, log)
            # Asked after reading the log: see _TrafficState.keep_only.
            registered = await self._registered(environment)
            return await asyncio.to_thread(state.finish, traffic, rid, registered)

    def _read_traffic(self, environment: str, log: Path) -> _TrafficState:
        """The saved traffic state plus the lines of `log` written since."""
        state = _TrafficState.load(self._traffic_file(environment))
        state.ingest(log)
        return state

    async def _registered(self, environment: str) -> dict[str, list[str]] | None:
        """Route id -> registered backend addresses, for each service of the environment.

        None when Caddy cannot tell (not running, no server for the environment).
        """
        try:
            async with self._admin() as client:
                response = await self._call(
                    client,
                    "GET",
                    f"/config/apps/http/servers/{environment}/routes",
                    what=f"read the routes of environment {environment}",
                    allow=(400, 404),
                )
        except RouterError:
            return None  # the log alone still answers; Caddy errors surface elsewhere
        routes = response.json() if response.status_code < 400 else None
        if not isinstance(routes, list):
            return None
        prefix, fallback = route_id(environment, ""), fallback_route_id(environment)
        registered: dict[str, list[str]] = {}
        for route in routes:
            rid = route.get("@id") if isinstance(route, dict) else None
            if isinstance(rid, str) and rid.startswith(prefix) and rid != fallback:
                registered[rid] = list(backends_of_route(route))
        return registered


if TYPE_CHECKING:

    def _implements_router(router: CaddyRouter) -> Router:
        return router  # mypy checks that CaddyRouter satisfies the protocol


# ---------------------------------------------------------------------------
# Helpers


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        text = str(body["error"])
    else:
        text = response.text.strip() or response.reason_phrase
    return text if len(text) <= 2000 else text[:2000] + "..."


def _ensure_logger(config: dict[str, Any], environment: str, logger: dict[str, Any]) -> None:
    logs = config.setdefault("logging", {}).setdefault("logs", {})
    logs[logger_name(environment)] = logger
    # keep access lines out of Caddy's default log (stderr), unless already excluded
    default = logs.setdefault("default", {})
    excluded = default.get("exclude") or []
    name = f"http.log.access.{logger_name(environment)}"
    if not any(name == e or name.startswith(e + ".") for e in excluded):
        default["exclude"] = [*excluded, name]


def _set_certificate(
    config: dict[str, Any], environment: str, entry: dict[str, Any] | None
) -> None:
    """Put the environment's certificate entry in `apps.tls` (or take it out), leaving
    other certificates alone and no empty `tls` app behind."""
    if entry is None and "tls" not in (config.get("apps") or {}):
        return
    apps = config.setdefault("apps", {})
    tls_app = apps.get("tls") or {}
    certificates = tls_app.get("certificates") or {}
    files = [
        f
        for f in certificates.get("load_files") or []
        if tls_tag(environment) not in f.get("tags", [])
    ]
    if entry is not None:
        files.append(entry)
    if files:
        certificates["load_files"] = files
    else:
        certificates.pop("load_files", None)
    if certificates:
        tls_app["certificates"] = certificates
    else:
        tls_app.pop("certificates", None)
    if tls_app:
        apps["tls"] = tls_app
    else:
        apps.pop("tls", None)


def _drop_logger(config: dict[str, Any], environment: str) -> None:
    logs = (config.get("logging") or {}).get("logs") or {}
    logs.pop(logger_name(environment), None)
    default = logs.get("default")
    if isinstance(default, dict) and default.get("exclude"):
        name = f"http.log.access.{logger_name(environment)}"
        default["exclude"] = [e for e in default["exclude"] if e != name]
        if not default["exclude"]:
            del default["exclude"]


# Caddy (lumberjack) names a rolled log `<stem>-<UTC time><suffix>`.
_ROLLED_TIME = r"-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}"


def rolled_logs(log: Path) -> list[Path]:
    """The rolled copies of an access log that Caddy keeps (`access-prod-<time>.log`).

    A plain `access-prod-*.log` glob would also match `access-prod-eu.log`,
    the log of environment `prod-eu`.
    """
    pattern = re.compile(re.escape(log.stem) + _ROLLED_TIME + re.escape(log.suffix))
    return [p for p in log.parent.glob(f"{log.stem}-*{log.suffix}") if pattern.fullmatch(p.name)]


# The fields of an access line that traffic_stats needs, found without parsing
# the whole JSON (a sixth of the cost; the line is mostly request and response
# headers). Caddy writes `duration`, `size` and `status` in this order at the
# top level, and the `log_append` fields last. The pattern cannot match inside
# a string (a quote there is escaped) nor a header (their names are
# canonicalized, "Duration", and their values are lists). A line that does
# not match both (another layout) is parsed as JSON.
_TIMING_RE = re.compile(
    rb',"duration":(?P<seconds>[0-9.eE+-]+),"size":\d+,"status":(?P<status>\d+),'
)
_APPENDED_RE = re.compile(
    rb',"upstream":"(?P<upstream>[^"\\]*)","conveyor_route":"(?P<route>[^"\\]*)"\}\s*$'
)
_ROUTE_KEY = b'"conveyor_route"'


def access_fields(raw_line: bytes) -> tuple[str, str, int, float] | None:
    """(route id, upstream address, status, latency ms) of an access log line.

    None for a line of no service route, or answered without a backend (the
    503 of a service without one), or not understood.

    >>> access_fields(b'{"msg":"handled request","duration":0.0015,"size":2,"status":200,'
    ...     b'"resp_headers":{},"upstream":"tcp/10.0.0.1:80","conveyor_route":"conveyor-p-api"}')
    ('conveyor-p-api', '10.0.0.1:80', 200, 1.5)
    """
    appended = _APPENDED_RE.search(raw_line, max(0, len(raw_line) - 600))
    timing = _TIMING_RE.search(raw_line) if appended is not None else None
    if appended is not None and timing is not None:
        route: object = appended["route"].decode()
        upstream: object = appended["upstream"].decode()
        status: object = timing["status"]
        seconds: object = timing["seconds"]
    else:
        if _ROUTE_KEY not in raw_line:
            return None  # not one of our routes (e.g. the 404 fallback): skip the parse
        try:
            entry = json.loads(raw_line)
        except ValueError:
            return None
        if not isinstance(entry, dict):
            return None
        route, upstream = entry.get("conveyor_route"), entry.get("upstream")
        status, seconds = entry.get("status", 0), entry.get("duration")
    address = normalize_upstream(upstream)
    millis = valid_latency(seconds, 1000.0)  # Caddy logs seconds
    if not isinstance(route, str) or not route or address is None or millis is None:
        return None
    if not isinstance(status, int | str | bytes) or isinstance(status, bool):
        return None
    try:
        code = int(status)
    except ValueError:
        return None
    return route, address, code, round(millis, 3)


@dataclass
class _TrafficState:
    """What `traffic_stats` keeps between calls: `<state_dir>/traffic-<env>.json`.

    * `position`: how far the access log was read;
    * `tallies`: route id -> backend address -> cumulative counters, for the
      backends registered in Caddy (the others are forgotten, see `keep_only`);
    * `recent`: route id -> the route's last `TRAFFIC_WINDOW` (address, ms)
      requests, for the quantiles shown to people.

    Counters and position are written together (atomically), so a line is
    counted exactly once across processes.
    """

    position: LogPosition = field(default_factory=LogPosition)
    tallies: dict[str, dict[str, Tally]] = field(default_factory=dict)
    recent: dict[str, Window] = field(default_factory=dict)

    VERSION = 2

    @classmethod
    def load(cls, path: Path) -> _TrafficState:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != cls.VERSION:
                # version 1 kept rows, not counters: count again from the current log
                raise ValueError(f"traffic state version {raw.get('version')}")
            return cls(
                position=LogPosition.from_json(raw),
                tallies={
                    str(rid): {str(a): Tally.from_json(t) for a, t in backends.items()}
                    for rid, backends in raw.get("tallies", {}).items()
                },
                recent={
                    str(rid): Window.from_json(window, TRAFFIC_WINDOW)
                    for rid, window in raw.get("recent", {}).items()
                },
            )
        except (OSError, ValueError, TypeError, AttributeError, KeyError):
            # missing or damaged: start over from the beginning of the current log
            return cls()

    def save(self, path: Path) -> None:
        raw = {
            "version": self.VERSION,
            **self.position.to_json(),
            "tallies": {
                rid: {address: tally.to_json() for address, tally in backends.items()}
                for rid, backends in self.tallies.items()
            },
            "recent": {rid: window.to_json() for rid, window in self.recent.items()},
        }
        atomic_write_text(path, json.dumps(raw, separators=(",", ":")) + "\n")

    def ingest(self, log: Path) -> None:
        """Count the lines Caddy appended since last time (following its rolls of the file)."""
        self.position.read_new(log, rolled_logs(log), self._add)
        for backends in self.tallies.values():
            for tally in backends.values():
                tally.settle()
        for window in self.recent.values():
            window.trim()

    def _add(self, raw_line: bytes) -> None:
        fields = access_fields(raw_line)
        if fields is None:
            return
        rid, address, status, millis = fields
        backends = self.tallies.setdefault(rid, {})
        tally = backends.get(address)
        if tally is None:
            tally = backends[address] = Tally()
        tally.count(status, millis)
        window = self.recent.get(rid)
        if window is None:
            window = self.recent[rid] = Window(TRAFFIC_WINDOW)
        window.append(address, millis)

    def keep_only(self, registered: Mapping[str, Iterable[str]]) -> None:
        """Forget the counters of routes and backends that are not registered (any more).

        Called with what Caddy's config holds *after* the log was read: a line
        is only written while its backend is in the config, so a backend
        missing then was removed after its last counted request.
        """
        for rid in list(self.tallies):
            wanted = set(registered.get(rid, ()))
            backends = self.tallies[rid]
            for address in [a for a in backends if a not in wanted]:
                del backends[address]
            if not backends:
                del self.tallies[rid]
        for rid in [r for r in self.recent if r not in registered]:
            del self.recent[rid]

    def forget(self, rid: str, address: str) -> None:
        """Drop a backend's counters and its requests in the route's window."""
        backends = self.tallies.get(rid, {})
        backends.pop(address, None)
        if not backends:
            self.tallies.pop(rid, None)
        window = self.recent.get(rid)
        if window is not None:
            self.recent[rid] = window.without([address])

    def finish(
        self, path: Path, rid: str, registered: Mapping[str, list[str]] | None
    ) -> dict[str, TrafficStats]:
        """Forget what is not registered, save, and the stats of route `rid`.

        `registered` is route id -> backend addresses, None when unknown (then
        nothing is forgotten and the backends with counters are reported).
        """
        if registered is not None:
            self.keep_only(registered)
        self.save(path)
        if registered is None:
            return self.stats(rid, list(self.tallies.get(rid, {})))
        return self.stats(rid, registered.get(rid, []))

    def stats(self, rid: str, addresses: Iterable[str]) -> dict[str, TrafficStats]:
        """TrafficStats of these backends of a route (zeros for one without traffic)."""
        tallies = self.tallies.get(rid, {})
        window = self.recent.get(rid)
        quantiles = window.quantiles() if window is not None else {}
        stats: dict[str, TrafficStats] = {}
        for address in addresses:
            tally = tallies.get(address) or Tally()
            p50, p95, p99 = quantiles.get(address, (None, None, None))
            stats[address] = TrafficStats(
                address=address,
                requests=tally.requests,
                status_2xx=tally.classes[0],
                status_3xx=tally.classes[1],
                status_4xx=tally.classes[2],
                status_5xx=tally.classes[3],
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
                latency=tally.histogram(),
            )
        return stats
