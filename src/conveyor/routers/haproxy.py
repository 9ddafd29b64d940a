"""`Router` on a real HAProxy, driven through its stats socket (runtime API).

Layout of the generated haproxy.cfg (see `haproxy_process` for how it runs):

* one frontend per environment, `conveyor.<env>`, bound to its listen
  address (`ssl crt <haproxy_dir>/tls/<env>.pem` with `tls:`: the
  certificate and key in one 0600 file, `X-Forwarded-Proto: https`); one
  `use_backend` per service, longest path prefix first, matched by prefix
  (`/api` matches `/api` and `/api/...`, not `/apix`) and optional host;
  then a backend answering 404 "no route for this request ...".
* one backend per (environment, service), `conveyor.<env>.<service>`,
  `balance roundrobin` (a dynamic algorithm: servers can be added at
  runtime, weights change at once), an optional `replace-path` that strips
  the prefix, and HAProxy's own 503 (`http-error`) saying "no healthy
  instance of <service>" while no server has a weight above 0. Each
  registered backend is a server named by its address, with its weight
  (0..256 in HAProxy; larger weights are scaled down, keeping the shares).

What lives where:

* The desired state (environments, routes, backends and weights) is
  `<haproxy_dir>/state.json`, written atomically after every change; the
  config file is generated from it with static `server` lines, so a
  restarted HAProxy routes as before. `weights()` reads that file.
* Backend changes go to HAProxy over the stats socket, without a reload:
  `add server` + `enable server` (register), `set server ... weight`
  (set_weights; raised weights first, then lowered ones, in one command
  line, so a flip never leaves the service without a server), weight 0 then
  the in-flight count of the server (drain), `state maint` + `del server`
  (remove; a server with requests still in flight stays in maintenance,
  with no traffic, until a later change or reload removes it). Every change
  first reads the servers HAProxy has and only sends the difference, so a
  change that failed halfway is completed by the next one.
* Environment changes rewrite the config and reload HAProxy seamlessly
  (`haproxy_process.reload_haproxy`).

`traffic_stats` numbers come from two places:

* requests and status classes: HAProxy's own counters (`show stat`:
  `req_tot`, `hrsp_1xx`..`hrsp_5xx` of each server), cumulative. A reload
  starts a worker with zeroed counters, so the router adds what the old
  worker had counted when it reloaded (`carried` in the state file); a
  restart of HAProxy (not a reload) starts them again from that figure.
* latencies: the traffic log (`log-format "conveyor-traffic %b %s %ST %Ta
  %Tr"` on HAProxy's stdout, which supervisord writes to `haproxy.log`),
  read incrementally like the Caddy access log (following supervisord's
  rotations); `%Ta` is the time HAProxy spent on the request, from its
  first byte to the end of the response, in whole milliseconds. Kept in
  `<haproxy_dir>/traffic.json`: the log position, a cumulative latency
  histogram (`DEFAULT_BOUNDS_MS`) per (backend, server), and the last
  `TRAFFIC_WINDOW` (server, ms) requests per backend for p50/p95/p99.
  Histograms are kept for registered servers only; `remove` drops a
  server's at once (HAProxy's counters die with the server too), so a
  backend registered again later starts from zero.

The histogram's total follows `requests` but may lag it a little: HAProxy
counts a request before the end of its response, when it logs it, and then
supervisord copies the line to the file (measured: well under
a millisecond at rest, up to ~20 ms at 1,000 req/s on 2 cores). It can also
differ for good: a request logged without a latency (`%Ta` of -1) is
counted but has none (a client that gives up early still gets a latency: the
time until the server answered, measured); a restart of HAProxy loses the
counts since the last reload but not the logged latencies; lines HAProxy
could not write (`show info`: DroppedLogs) are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.analysis.metrics import Histogram
from conveyor.errors import RouterError
from conveyor.paths import Paths
from conveyor.routers.base import RouteSpec, TrafficStats
from conveyor.routers.caddy_process import atomic_write_text
from conveyor.routers.haproxy_process import (
    PROGRAM,
    SERVER_OPTIONS,
    TRAFFIC_TAG,
    EnvironmentState,
    RouterState,
    backend_name,
    config_path,
    frontend_name,
    haproxy_weights,
    log_path,
    master_command,
    port_is_free,
    reload_haproxy,
    render_config,
    running_layout,
    send_command,
    server_name,
    state_path,
    write_config,
)
from conveyor.routers.traffic import LogPosition, Tally, Window, valid_latency

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.routers.base import Router
    from conveyor.routers.tls import TlsFiles

__all__ = ["HAProxyRouter", "build"]


def build(rt: Runtime, environment: str) -> HAProxyRouter:
    """The `haproxy` plugin (`conveyor.plugins`): one HAProxy of the home for every
    environment."""
    return HAProxyRouter(rt.paths)


_TRAFFIC_TAG = TRAFFIC_TAG.encode()
STATE_LOCK = ".state.lock"  # serializes changes across tasks and processes
TRAFFIC_LOCK = ".traffic.lock"
TRAFFIC_WINDOW = 10_000  # requests kept per backend for latency quantiles
COMMANDS_PER_LINE = 40  # the CLI reads one line into a 16 kB buffer
RELOAD_TIMEOUT = 15.0

# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced / config maintenance, forced drain
_ADMIN_MAINT = 0x01 | 0x04
_ADMIN_DRAIN = 0x08
_ANSWERS_OK = ("New server registered.", "Server deleted.")
_STILL_BUSY = "still has connections"

_HINT_NOT_RUNNING = (
    f"HAProxy does not seem to run; check it with `conveyor status` "
    f"(it is supervised as the `{PROGRAM}` program)"
)
_ENV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOSTPORT_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
_LISTEN_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):(?P<port>\d{1,5})$")
# What can be written inside a single-quoted HAProxy word and a PCRE literal.
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&()+,;=:@%/-]*$")
_HOST_RE = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


# ---------------------------------------------------------------------------
# Validation


def _check_environment(environment: str) -> None:
    if not _ENV_RE.match(environment):
        raise RouterError(
            f"haproxy: environment name {environment!r} cannot be used in an HAProxy proxy name",
            hint="use letters, digits, '-' and '_' only (at most 63 characters)",
        )


def _check_service(service: str) -> None:
    if not _SERVICE_RE.match(service):
        raise RouterError(
            f"haproxy: service name {service!r} cannot be used in an HAProxy backend name",
            hint="use letters, digits, '.', '-' and '_' only (at most 63 characters)",
        )


def _check_address(environment: str, service: str, address: str) -> None:
    match = _HOSTPORT_RE.match(address)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise RouterError(
            f"haproxy: backend address {address!r} of {environment}/{service} is not host:port",
            hint="register instances by their listen address, e.g. 127.0.0.1:8001",
        )


def _check_listen(environment: str, listen: str) -> None:
    match = _LISTEN_RE.match(listen)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise RouterError(
            f"haproxy: listen address {listen!r} of environment {environment} is not [host]:port",
            hint="set the environment's listen address to e.g. 127.0.0.1:8080 or :80",
        )


def _check_weights(environment: str, service: str, weights: Mapping[str, int]) -> None:
    for address, weight in weights.items():
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise RouterError(
                f"haproxy: weight {weight!r} for {address} of {environment}/{service} "
                "is not a whole number >= 0",
                hint="weights are relative shares such as 0, 1, 3 or 100",
            )


def normalize_routes(environment: str, routes: list[RouteSpec]) -> list[RouteSpec]:
    """Checked routes with paths without a trailing '/' and lower-case hosts."""
    seen: set[str] = set()
    normalized: list[RouteSpec] = []
    for spec in routes:
        _check_service(spec.service)
        if spec.service in seen:
            raise RouterError(
                f"haproxy: service {spec.service!r} is routed twice in environment {environment}",
                hint="give each service a single route",
            )
        seen.add(spec.service)
        if not _PATH_RE.match(spec.path):
            raise RouterError(
                f"haproxy: route path {spec.path!r} of {environment}/{spec.service} is not a "
                "path prefix HAProxy can match",
                hint="use a prefix starting with '/', e.g. /api (no wildcards, spaces, quotes "
                "or backslashes)",
            )
        host = spec.host or None
        if host is not None and not _HOST_RE.match(host):
            raise RouterError(
                f"haproxy: route host {host!r} of {environment}/{spec.service} is not a host name",
                hint="use a name such as app.example.com or *.example.com (no port)",
            )
        path = spec.path.rstrip("/") or "/"
        normalized.append(
            RouteSpec(spec.service, path, host.lower() if host else None, spec.strip_prefix)
        )
    return normalized


# ---------------------------------------------------------------------------
# Reading HAProxy's answers


@dataclass(frozen=True)
class ServerState:
    """A server as the running worker has it (`show servers state`)."""

    name: str
    admin: int  # srv_admin_state bits
    weight: int  # srv_uweight


def parse_servers_state(answer: str) -> dict[str, ServerState] | None:
    """`show servers state <backend>` -> servers by name; None when the backend is unknown.

    >>> parse_servers_state("1\\n# be_id be_name srv_id srv_name srv_addr srv_op_state "
    ...     "srv_admin_state srv_uweight\\n3 b 1 127.0.0.1:8001 127.0.0.1 2 0 5\\n\\n")
    {'127.0.0.1:8001': ServerState(name='127.0.0.1:8001', admin=0, weight=5)}
    """
    lines = [line for line in answer.splitlines() if line.strip()]
    if not lines or not lines[0].strip().isdigit():
        return None
    header: list[str] = []
    servers: dict[str, ServerState] = {}
    for line in lines[1:]:
        if line.startswith("#"):
            header = line.lstrip("# ").split()
            continue
        row = dict(zip(header, line.split(), strict=False))
        try:
            name = row["srv_name"]
            servers[name] = ServerState(name, int(row["srv_admin_state"]), int(row["srv_uweight"]))
        except (KeyError, ValueError):
            continue
    return servers


def parse_stat(answer: str) -> list[dict[str, str]]:
    """`show stat` CSV -> one dict per row, keyed by the header's field names."""
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for line in answer.splitlines():
        if line.startswith("# "):
            header = line[2:].split(",")
        elif line.strip() and header:
            rows.append(dict(zip(header, line.split(","), strict=False)))
    return rows


def parse_old_workers(show_proc: str) -> list[int]:
    """PIDs listed under "# old workers" by the master's `show proc`.

    >>> parse_old_workers("#<PID> <type>\\n1 master 2\\n# workers\\n9 worker 0\\n"
    ...     "# old workers\\n7 worker 1\\n# programs\\n")
    [7]
    """
    pids: list[int] = []
    section = ""
    for line in show_proc.splitlines():
        if line.startswith("#"):
            section = line.strip("# ").strip()
            continue
        first = line.split(maxsplit=1)
        if section == "old workers" and first and first[0].isdigit():
            pids.append(int(first[0]))
    return pids


_COUNTER_FIELDS = ("req_tot", "hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx")


def _counters(row: Mapping[str, str]) -> list[int]:
    return [int(row.get(f) or 0) for f in _COUNTER_FIELDS]


def _busy(show_stat: str, name: str) -> int:
    """Requests at or queued for server `name` in a `show stat` answer."""
    return sum(
        int(row.get("scur") or 0) + int(row.get("qcur") or 0)
        for row in parse_stat(show_stat)
        if row.get("svname") == name
    )


def _leftover(answer: str) -> str:
    """What an answer says besides the success messages of changes (empty: all went well)."""
    text = answer
    for ok in _ANSWERS_OK:
        text = text.replace(ok, "")
    return text.strip()


# ---------------------------------------------------------------------------
# The router


class HAProxyRouter:
    """`Router` backed by a running HAProxy (see the module docstring for how)."""

    def __init__(self, paths: Paths, *, timeout: float = 10.0) -> None:
        self.paths = paths
        self.state_dir = paths.haproxy_dir
        self.timeout = timeout

    # -- paths ---------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return state_path(self.paths)

    @property
    def config_file(self) -> Path:
        return config_path(self.paths)

    @property
    def traffic_log(self) -> Path:
        """HAProxy's stdout: traffic log lines (and HAProxy's own messages)."""
        return log_path(self.paths)

    def _traffic_file(self) -> Path:
        return self.state_dir / "traffic.json"

    # -- talking to HAProxy --------------------------------------------------

    async def _cli(self, command: str, *, what: str, master: bool = False) -> str:
        socket_path = self.paths.haproxy_master_socket if master else self.paths.haproxy_socket
        kind = "master CLI" if master else "stats socket"
        try:
            if master:  # waits while a reload (by another process) re-executes the master
                return await master_command(self.paths, command, timeout=self.timeout)
            return await send_command(socket_path, command, timeout=self.timeout)
        except TimeoutError:
            raise RouterError(
                f"haproxy: the {kind} {socket_path} did not answer within "
                f"{self.timeout:g}s while trying to {what}",
                hint=_HINT_NOT_RUNNING + "; a hung HAProxy needs a restart",
            ) from None
        except OSError as exc:
            raise RouterError(
                f"haproxy: cannot reach the {kind} {socket_path} while trying to {what}: "
                f"{exc.strerror or exc}",
                hint=_HINT_NOT_RUNNING,
            ) from None

    async def _change(self, commands: list[str], *, what: str) -> None:
        """Send changes, several per line; RouterError with HAProxy's words if one fails."""
        for start in range(0, len(commands), COMMANDS_PER_LINE):
            chunk = commands[start : start + COMMANDS_PER_LINE]
            answer = await self._cli("; ".join(chunk), what=what)
            problem = _leftover(answer)
            if problem:
                raise RouterError(
                    f"haproxy: HAProxy refused a change while trying to {what}: {problem} "
                    f"(commands: {'; '.join(chunk)})",
                    hint="the next change of this service retries what is missing; "
                    f"see {self.traffic_log} if it persists",
                )

    async def _servers(self, backend: str, *, what: str) -> dict[str, ServerState] | None:
        answer = await self._cli(f"show servers state {backend}", what=what)
        return parse_servers_state(answer)

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
                            f"haproxy: another Conveyor process holds {self.state_dir / name} "
                            f"for more than {wait:g}s",
                            hint="wait for the other command to finish, then retry",
                        ) from None
                    await asyncio.sleep(0.02)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    # -- state ---------------------------------------------------------------

    def _load(self) -> RouterState:
        return RouterState.load(self.state_file)

    def _save(self, state: RouterState) -> None:
        """The state file, then the config generated from it (for HAProxy's next start)."""
        state.save(self.state_file)
        write_config(self.paths, state, check=False)

    @staticmethod
    def _environment(state: RouterState, environment: str) -> EnvironmentState:
        env = state.environments.get(environment)
        if env is None:
            raise RouterError(
                f"haproxy: environment {environment} is not routed by HAProxy "
                f"(no frontend {frontend_name(environment)!r})",
                hint="deploy the environment first (ensure_environment creates its frontend)",
            )
        return env

    def _service(self, state: RouterState, environment: str, service: str) -> dict[str, int]:
        env = self._environment(state, environment)
        if not any(spec.service == service for spec in env.routes):
            raise RouterError(
                f"haproxy: service {service} has no route in environment {environment} "
                f"(no backend {backend_name(environment, service)!r})",
                hint=f"add {service} to the environment's routes in conveyor.yml and deploy",
            )
        return env.backends.setdefault(service, {})

    # -- backends ------------------------------------------------------------

    async def _apply_backends(
        self,
        environment: str,
        service: str,
        change: Callable[[dict[str, int]], dict[str, int]],
        *,
        what: str,
    ) -> dict[str, int]:
        """Change one service's backends in HAProxy (runtime API), then persist them.

        `change(backends) -> new backends` raises RouterError to refuse.
        """
        async with self._locked(STATE_LOCK):
            state = self._load()
            current = dict(self._service(state, environment, service))
            new = change(dict(current))
            await self._reconcile(state, environment, service, new, what=what)
            if new != current:
                backend = backend_name(environment, service)
                removed = [server_name(address) for address in set(current) - set(new)]
                state.environments[environment].backends[service] = new
                carried = state.carried.get(backend, {})
                for name in removed:
                    carried.pop(name, None)
                await asyncio.to_thread(self._save, state)
                if removed:
                    await self._forget_traffic(backend, removed)
            return new

    async def _forget_traffic(self, backend: str, names: list[str]) -> None:
        """Drop the latency counters of removed servers (HAProxy's counters die with them).

        The log lines written until now are counted first, so that none is
        left to be counted for a later registration of the same address.
        """
        if not self._traffic_file().exists():
            return
        async with self._locked(TRAFFIC_LOCK):
            traffic = await asyncio.to_thread(self._read_traffic)
            traffic.forget(backend, names)
            await asyncio.to_thread(traffic.save, self._traffic_file())

    def _read_traffic(self) -> _TrafficState:
        """The saved traffic state plus the traffic log lines written since."""
        traffic = _TrafficState.load(self._traffic_file())
        traffic.ingest(self.traffic_log)
        return traffic

    async def _reconcile(
        self,
        state: RouterState,
        environment: str,
        service: str,
        desired: Mapping[str, int],
        *,
        what: str,
    ) -> None:
        """Make the running worker's servers of a backend match `desired` (address -> weight)."""
        backend = backend_name(environment, service)
        actual = await self._servers(backend, what=what)
        if actual is None:
            # The running worker lacks the backend (e.g. HAProxy was started
            # with an older config): load the config of the saved state.
            await self._reload(state, what=what)
            await asyncio.to_thread(self._save, state)  # the counters it carried over
            actual = await self._servers(backend, what=what)
            if actual is None:
                raise RouterError(
                    f"haproxy: HAProxy has no backend {backend} even after a reload",
                    hint=f"see {self.traffic_log} and {self.config_file}",
                )
        raised: list[str] = []
        lowered: list[str] = []
        wanted_names: set[str] = set()
        for address, weight in haproxy_weights(desired).items():
            name = server_name(address)
            wanted_names.add(name)
            target = f"{backend}/{name}"
            server = actual.get(name)
            if server is None:
                dial = await _resolve(environment, service, address)
                # a dynamic server starts in maintenance: enable it
                raised += [
                    f"add server {target} {dial} weight {weight} {SERVER_OPTIONS}",
                    f"enable server {target}",
                ]
                continue
            if server.admin & (_ADMIN_MAINT | _ADMIN_DRAIN):
                raised += [
                    f"set server {target} weight {weight}",
                    f"set server {target} state ready",
                ]
            elif server.weight != weight:
                (raised if weight > server.weight else lowered).append(
                    f"set server {target} weight {weight}"
                )
        retired = sorted(set(actual) - wanted_names)
        retiring: list[str] = []
        for name in retired:
            target = f"{backend}/{name}"
            if actual[name].admin & _ADMIN_MAINT:
                # Entering maintenance closes the server's idle connections, which
                # `del server` requires; a request that finished since then left
                # one: leave and enter again (at weight 0, so nothing is sent).
                retiring += [f"set server {target} weight 0", f"set server {target} state ready"]
            retiring.append(f"set server {target} state maint")
        # Raised weights first: no instant in between leaves the service without a server.
        commands = raised + lowered + retiring
        if commands:
            await self._change(commands, what=what)
        for name in retired:
            answer = await self._cli(f"del server {backend}/{name}", what=what)
            problem = _leftover(answer)
            # Requests still in flight: it stays in maintenance (no new traffic)
            # and goes at the next change or reload.
            if problem and _STILL_BUSY not in problem and "No such server" not in problem:
                raise RouterError(
                    f"haproxy: HAProxy refused to delete server {backend}/{name} while trying "
                    f"to {what}: {problem}",
                    hint="it is in maintenance and gets no traffic; retry later",
                )

    async def _in_flight(self, backend: str, name: str) -> int:
        """Requests at or queued for a server, in the current worker and in old ones.

        An old worker (finishing its connections after a reload) takes no
        runtime change ("Proxy is disabled"): it routes the next request of a
        keep-alive connection that was idle during the reload with the
        weights it had then. While it could still send one to this server,
        it counts as one request in flight.
        """
        what = f"count requests in flight to {backend}/{name}"
        total = _busy(await self._cli(f"show stat {backend} 4 -1", what=what), name)
        show_proc = await self._cli("show proc", what=what, master=True)
        for pid in parse_old_workers(show_proc):
            try:
                stat = await self._cli(f"@!{pid} show stat {backend} 4 -1", what=what, master=True)
                servers = await self._cli(
                    f"@!{pid} show servers state {backend}", what=what, master=True
                )
            except RouterError:
                continue  # it exited meanwhile
            busy = _busy(stat, name)
            server = (parse_servers_state(servers) or {}).get(name)
            routable = (
                server is not None
                and server.weight > 0
                and not server.admin & (_ADMIN_MAINT | _ADMIN_DRAIN)
            )
            total += max(busy, 1) if routable else busy
        return total

    # -- reloads -------------------------------------------------------------

    async def _reload(self, state: RouterState, *, what: str) -> None:
        """Load the config of `state` into HAProxy (seamless reload); updates `state.carried`.

        The config file is put back as it was when the reload fails.
        """
        snapshot = parse_stat(await self._cli("show stat -1 4 -1", what=what))
        try:
            previous: str | None = self.config_file.read_text(encoding="utf-8")
        except OSError:
            previous = None
        digest = await asyncio.to_thread(write_config, self.paths, state)
        try:
            await reload_haproxy(self.paths, digest, timeout=max(self.timeout, RELOAD_TIMEOUT))
        except RouterError:
            if previous is not None:
                atomic_write_text(self.config_file, previous)
            raise
        registered = {
            backend_name(environment, service): {server_name(a) for a in addresses}
            for environment, env in state.environments.items()
            for service, addresses in env.backends.items()
        }
        for row in snapshot:
            backend, server = row.get("pxname", ""), row.get("svname", "")
            if server not in registered.get(backend, ()):
                continue
            carried = state.carried.setdefault(backend, {}).setdefault(server, [0] * 6)
            for i, count in enumerate(_counters(row)):
                carried[i] += count
        for backend in set(state.carried) - set(registered):
            del state.carried[backend]

    # -- Router protocol -----------------------------------------------------

    def tls_pem(self, environment: str) -> Path:
        """The certificate and key of the environment's `tls:` in one file, as HAProxy's
        `crt` wants them (0600, in a 0700 directory of the router's own)."""
        return self.paths.haproxy_dir / "tls" / f"{environment}.pem"

    def _write_tls(self, environment: str, tls: TlsFiles) -> None:
        pem = self.tls_pem(environment)
        pem.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem.parent.chmod(0o700)
        atomic_write_text(pem, tls.combined_pem.decode("ascii"))  # mkstemp: mode 0600

    async def ensure_environment(
        self,
        environment: str,
        listen: str,
        routes: list[RouteSpec],
        tls: TlsFiles | None = None,
    ) -> None:
        """Listen on `listen` (HTTPS with `tls`) and route each service; keeps backends.

        A config rewrite and a seamless reload when the layout differs from
        what the running worker loaded; otherwise only the servers are checked.
        """
        _check_environment(environment)
        _check_listen(environment, listen)
        specs = normalize_routes(environment, routes)
        what = f"configure environment {environment} on {listen}"
        async with self._locked(STATE_LOCK):
            state = self._load()
            for name, other in state.environments.items():
                if name != environment and other.listen == listen:
                    raise RouterError(
                        f"haproxy: {listen} is already used by environment {name}; "
                        f"environment {environment} cannot listen there too",
                        hint="give each environment its own listen address in conveyor.yml",
                    )
            current = state.environments.get(environment)
            old_backends = current.backends if current else {}
            wanted = RouterState(
                environments={
                    **state.environments,
                    environment: EnvironmentState(
                        listen=listen,
                        routes=specs,
                        backends={s.service: dict(old_backends.get(s.service, {})) for s in specs},
                        tls_pem=None if tls is None else str(self.tls_pem(environment)),
                        tls_digest=None if tls is None else tls.digest,
                    ),
                },
                carried=state.carried,
            )
            _, digest = render_config(self.paths, wanted)
            running = await self._running_layout(what=what)
            if running == digest:
                for spec in specs:
                    await self._reconcile(
                        wanted,
                        environment,
                        spec.service,
                        wanted.environments[environment].backends[spec.service],
                        what=what,
                    )
                if wanted.to_json() != state.to_json():
                    await asyncio.to_thread(self._save, wanted)
                return
            if (current is None or current.listen != listen) and not port_is_free(listen):
                raise RouterError(
                    f"haproxy: {listen} is already in use by another program; "
                    f"environment {environment} cannot listen there",
                    hint=f"stop the program that listens on {listen} or change the "
                    "environment's listen address",
                )
            if tls is not None:
                await asyncio.to_thread(self._write_tls, environment, tls)
            await self._reload(wanted, what=what)
            await asyncio.to_thread(self._save, wanted)
            if tls is None:
                self.tls_pem(environment).unlink(missing_ok=True)

    async def _running_layout(self, *, what: str) -> str | None:
        try:
            return await running_layout(self.paths, timeout=self.timeout)
        except TimeoutError:
            raise RouterError(
                f"haproxy: the stats socket {self.paths.haproxy_socket} did not answer within "
                f"{self.timeout:g}s while trying to {what}",
                hint=_HINT_NOT_RUNNING + "; a hung HAProxy needs a restart",
            ) from None
        except OSError as exc:
            raise RouterError(
                f"haproxy: cannot reach the stats socket {self.paths.haproxy_socket} while "
                f"trying to {what}: {exc.strerror or exc}",
                hint=_HINT_NOT_RUNNING,
            ) from None

    async def remove_environment(self, environment: str) -> None:
        """Stop listening for the environment and forget its routes, backends and traffic."""
        _check_environment(environment)
        async with self._locked(STATE_LOCK):
            state = self._load()
            if environment in state.environments:
                wanted = RouterState(
                    environments={n: e for n, e in state.environments.items() if n != environment},
                    carried=state.carried,
                )
                await self._reload(wanted, what=f"remove environment {environment}")
                await asyncio.to_thread(self._save, wanted)
            self.tls_pem(environment).unlink(missing_ok=True)
        prefix = backend_name(environment, "")
        async with self._locked(TRAFFIC_LOCK):
            traffic = _TrafficState.load(self._traffic_file())
            gone = {b for b in (*traffic.latencies, *traffic.recent) if b.startswith(prefix)}
            if gone:
                for backend in gone:
                    traffic.latencies.pop(backend, None)
                    traffic.recent.pop(backend, None)
                traffic.save(self._traffic_file())

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
        """Set the weights of registered backends in one change (one command line, no reload).

        Backends not named keep their weight. All weights 0 makes the service
        answer 503 "no healthy instance of <service>". Weights above 256 are
        scaled down in HAProxy (keeping the shares); `weights()` returns them as given.
        """
        _check_environment(environment)
        _check_service(service)
        _check_weights(environment, service, weights)

        def change(backends: dict[str, int]) -> dict[str, int]:
            unknown = sorted(set(weights) - set(backends))
            if unknown:
                raise RouterError(
                    f"haproxy: {', '.join(unknown)} is not registered for {environment}/{service}",
                    hint="register the instance before giving it a weight",
                )
            backends.update(weights)
            return backends

        await self._apply_backends(
            environment, service, change, what=f"set weights {weights} for {environment}/{service}"
        )

    async def weights(self, environment: str, service: str) -> dict[str, int]:
        """Registered backends of a service and their weights (from the state file)."""
        _check_environment(environment)
        _check_service(service)
        return dict(self._service(self._load(), environment, service))

    async def drain(self, environment: str, service: str, address: str, timeout: float) -> int:
        """Set weight 0 and wait until in-flight requests finish or `timeout`.

        In-flight requests are HAProxy's own counters of the server (`scur` +
        `qcur` of `show stat`), summed over the current worker and the old
        ones still finishing requests after a reload (via the master CLI); an
        old worker that may still route a request to the server counts as
        one (it lives at most `timeout http-keep-alive` after its last
        request). Returns the number still in flight when it gave up
        (0 = drained).
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
        backend, name = backend_name(environment, service), server_name(address)
        deadline = time.monotonic() + max(timeout, 0.0)
        # A request balanced to the server just before the change may not be
        # counted yet: ask for two idle readings in a row.
        idle_readings = 0
        while True:
            in_flight = await self._in_flight(backend, name)
            idle_readings = idle_readings + 1 if in_flight == 0 else 0
            if idle_readings >= 2:
                return 0
            if time.monotonic() >= deadline:
                return in_flight
            await asyncio.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))

    async def remove(self, environment: str, service: str, address: str) -> None:
        """Forget a backend (it stops receiving traffic at once; requests in flight finish)."""
        _check_environment(environment)
        _check_service(service)

        def change(backends: dict[str, int]) -> dict[str, int]:
            backends.pop(address, None)
            return backends

        await self._apply_backends(
            environment, service, change, what=f"remove {address} from {environment}/{service}"
        )

    async def traffic_stats(self, environment: str, service: str) -> dict[str, TrafficStats]:
        """Per-backend cumulative requests, status classes and latency histogram.

        Requests and status classes are HAProxy's counters (`show stat`) plus
        what was carried over reloads. The latency histogram counts every
        line of the traffic log for the server, read incrementally (the
        position and the histograms are kept in `traffic.json`); quantiles
        come from the backend's last `TRAFFIC_WINDOW` lines. See the module
        docstring for why `latency.total` may lag `requests` a little.
        Only registered backends are reported, with zeros when they had no
        traffic; an unknown environment or service has none.
        """
        _check_environment(environment)
        _check_service(service)
        backend = backend_name(environment, service)
        state = self._load()
        registered = (state.environments.get(environment) or EnvironmentState("", [], {})).backends
        addresses = list(registered.get(service, {}))
        if not addresses:
            return {}
        # The counters first, then the log: a request is counted before it is
        # logged, so this keeps the two as close as they can be.
        answer = await self._cli(
            f"show stat {backend} 4 -1", what=f"read the counters of {environment}/{service}"
        )
        live = {row.get("svname", ""): _counters(row) for row in parse_stat(answer)}
        carried = state.carried.get(backend, {})
        async with self._locked(TRAFFIC_LOCK):
            traffic = await asyncio.to_thread(self._read_traffic)
            # The registered servers as of *after* reading the log: a server
            # missing then was removed after its last counted request.
            with contextlib.suppress(RouterError):
                traffic.keep_only(_registered_servers(self._load()))
            await asyncio.to_thread(traffic.save, self._traffic_file())
        window = traffic.recent.get(backend)
        quantiles = window.quantiles() if window is not None else {}
        latencies = traffic.latencies.get(backend, {})
        stats: dict[str, TrafficStats] = {}
        for address in addresses:
            name = server_name(address)
            counts = [
                a + b
                for a, b in zip(live.get(name, [0] * 6), carried.get(name, [0] * 6), strict=True)
            ]
            p50, p95, p99 = quantiles.get(name, (None, None, None))
            stats[address] = TrafficStats(
                address=address,
                requests=counts[0],
                status_2xx=counts[2],
                status_3xx=counts[3],
                status_4xx=counts[4],
                status_5xx=counts[5],
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
                latency=(latencies.get(name) or Tally()).histogram(),
            )
        return stats


if TYPE_CHECKING:

    def _implements_router(router: HAProxyRouter) -> Router:
        return router  # mypy checks that HAProxyRouter satisfies the protocol


# ---------------------------------------------------------------------------
# Helpers


async def _resolve(environment: str, service: str, address: str) -> str:
    """`host:port` with an IP address: dynamic servers get no DNS resolution in HAProxy."""
    host, _, port = address.rpartition(":")
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host.strip("[]"))
        return address
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise RouterError(
            f"haproxy: cannot resolve the backend address {address} of "
            f"{environment}/{service}: {exc}",
            hint="register instances by an IP address or a name this host resolves",
        ) from None
    ip = str(infos[0][4][0])
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _registered_servers(state: RouterState) -> dict[str, set[str]]:
    """Backend name -> names of its registered servers, over every environment."""
    return {
        backend_name(environment, service): {server_name(a) for a in addresses}
        for environment, env in state.environments.items()
        for service, addresses in env.backends.items()
    }


def rotated_logs(log: Path) -> list[Path]:
    """Rotated copies of the log: supervisord names them `<log>.1`, `<log>.2`, ..."""
    return [p for p in log.parent.glob(f"{log.name}.*") if p.suffix[1:].isdigit()]


@dataclass
class _TrafficState:
    """What `traffic_stats` keeps between calls: `<haproxy_dir>/traffic.json`.

    * `position`: how far the traffic log was read;
    * `latencies`: backend -> server -> cumulative latency histogram (in a
      `Tally`, whose request counts stay unused: HAProxy counts requests),
      for registered servers only (see `keep_only`);
    * `recent`: backend -> its last `TRAFFIC_WINDOW` (server, ms) requests.
    """

    position: LogPosition = field(default_factory=LogPosition)
    latencies: dict[str, dict[str, Tally]] = field(default_factory=dict)
    recent: dict[str, Window] = field(default_factory=dict)

    VERSION = 2

    @classmethod
    def load(cls, path: Path) -> _TrafficState:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != cls.VERSION:
                # version 1 had no histograms: count again from the current log
                raise ValueError(f"traffic state version {raw.get('version')}")
            return cls(
                position=LogPosition.from_json(raw),
                latencies={
                    str(b): {
                        str(s): Tally(latency=Histogram.from_dict(h)) for s, h in servers.items()
                    }
                    for b, servers in raw.get("latency_ms", {}).items()
                },
                recent={
                    str(b): Window.from_json(window, TRAFFIC_WINDOW)
                    for b, window in raw.get("recent", {}).items()
                },
            )
        except (OSError, ValueError, TypeError, AttributeError, KeyError):
            # missing or damaged: start over from the beginning of the current log
            return cls()

    def save(self, path: Path) -> None:
        raw = {
            "version": self.VERSION,
            **self.position.to_json(),
            "latency_ms": {
                b: {s: tally.histogram().to_dict() for s, tally in servers.items()}
                for b, servers in self.latencies.items()
            },
            "recent": {b: window.to_json() for b, window in self.recent.items()},
        }
        atomic_write_text(path, json.dumps(raw, separators=(",", ":")) + "\n")

    def ingest(self, log: Path) -> None:
        """Count the lines appended since last time (following supervisord's rotations)."""
        self.position.read_new(log, rotated_logs(log), self._add)
        for servers in self.latencies.values():
            for tally in servers.values():
                tally.settle()
        for window in self.recent.values():
            window.trim()

    def _add(self, raw_line: bytes) -> None:
        # conveyor-traffic <backend> <server> <status> <Ta ms> <Tr ms>
        parts = raw_line.split()
        if len(parts) < 5 or parts[0] != _TRAFFIC_TAG or parts[2] == b"<NOSRV>":
            return  # HAProxy's own messages, or answered without a server (404, 503)
        millis = valid_latency(parts[4])
        if millis is None:
            return  # -1: aborted before the end of the response
        backend, server = parts[1].decode(errors="replace"), parts[2].decode(errors="replace")
        servers = self.latencies.setdefault(backend, {})
        tally = servers.get(server)
        if tally is None:
            tally = servers[server] = Tally()
        tally.count_latency(millis)
        window = self.recent.get(backend)
        if window is None:
            window = self.recent[backend] = Window(TRAFFIC_WINDOW)
        window.append(server, millis)

    def keep_only(self, registered: Mapping[str, set[str]]) -> None:
        """Forget backends and servers that are not registered (any more)."""
        for backend in list(self.latencies):
            wanted = registered.get(backend, set())
            servers = self.latencies[backend]
            for name in [s for s in servers if s not in wanted]:
                del servers[name]
            if not servers:
                del self.latencies[backend]
        for backend in [b for b in self.recent if b not in registered]:
            del self.recent[backend]

    def forget(self, backend: str, names: Iterable[str]) -> None:
        """Drop servers' histograms and their requests in the backend's window."""
        gone = set(names)
        servers = self.latencies.get(backend, {})
        for name in gone:
            servers.pop(name, None)
        if not servers:
            self.latencies.pop(backend, None)
        window = self.recent.get(backend)
        if window is not None:
            self.recent[backend] = window.without(gone)
