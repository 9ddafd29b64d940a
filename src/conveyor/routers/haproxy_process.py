"""How to run HAProxy as a supervised program: command line, generated config, reloads.

HAProxy (2.6+, from the distribution: `apt-get install haproxy`) runs in
master-worker mode in the foreground::

    haproxy -W -S <run_dir>/haproxy-master.sock,mode,600 -f <haproxy_dir>/haproxy.cfg

* The **state file** `<haproxy_dir>/state.json` is the desired routing:
  environments (listen address, routes) and every service's backends with
  their weights. `HAProxyRouter` writes it (atomically) after each change.
* **haproxy.cfg** is generated from the state file (`write_config`) and lists
  every backend as a static `server` line with its weight, so a restarted
  HAProxy (crash, supervisord restart, reboot) routes exactly as before.
* Backends and weights are changed at runtime on the **stats socket**
  (`add server`, `set server ... weight`, `del server`): no reload, no
  connection touched. The file is rewritten too, for the next start.
* Environment changes (a frontend, a backend, an ACL) need a **reload**:
  `reload` on the master CLI re-executes the master, which starts a new
  worker with the new file. The listening sockets are handed over to it
  (`expose-fd listeners`), so no connection is refused or reset, the old
  worker finishes its requests in flight, and `option idle-close-on-response`
  keeps it from closing idle keep-alive connections under clients' feet: it
  answers their next request with `Connection: close` instead. An old worker
  takes no runtime change, so that one request goes by the weights of the
  reload time; `HAProxyRouter.drain` waits for such workers (they are gone
  `timeout http-keep-alive`, 10 s, after their last request).

The generated config carries a digest of its layout (everything but the
`server` lines) in the environment variable `CONVEYOR_HAPROXY_LAYOUT`, which
the stats socket reports (`show env`): that tells whether the running worker
has loaded the layout the state file describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import RouterError
from conveyor.paths import Paths
from conveyor.routers.base import RouteSpec, route_order
from conveyor.routers.caddy_process import atomic_write_text

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.targets.supervisor import Supervisor

PROGRAM = "conveyor-haproxy"  # its name under supervisord
CONFIG_NAME = "haproxy.cfg"
STATE_NAME = "state.json"
LOG_NAME = "haproxy.log"  # HAProxy's stdout and stderr: messages and the traffic log
LAYOUT_ENV = "CONVEYOR_HAPROXY_LAYOUT"
TRAFFIC_TAG = "conveyor-traffic"  # first word of each traffic log line
MAX_WEIGHT = 256  # HAProxy's largest server weight
HARD_STOP_AFTER = "10m"  # an old worker still busy this long after a reload is stopped
# Keep idle connections to backends for reuse. Dynamic servers (`add server`)
# take nothing from `default-server` and would otherwise pool none, opening a
# new connection per request; static lines get the same for consistency.
SERVER_OPTIONS = "pool-max-conn -1 pool-purge-delay 5s"

_SEARCH = (Path("/usr/sbin/haproxy"), Path("/usr/local/sbin/haproxy"))
_HINT_INSTALL = "install it with `apt-get install haproxy` (HAProxy 2.6 or newer)"
_HINT_NOT_RUNNING = (
    f"HAProxy does not seem to run; check it with `conveyor status` "
    f"(it is supervised as the `{PROGRAM}` program)"
)


# ---------------------------------------------------------------------------
# Files and command line


def haproxy_executable() -> Path:
    """`haproxy` on PATH, else where Debian and source installs put it."""
    found = shutil.which("haproxy")
    if found is not None:
        return Path(found)
    for candidate in _SEARCH:
        if candidate.is_file():
            return candidate
    raise RouterError(
        "haproxy: the HAProxy binary was not found (neither on PATH nor in /usr/sbin)",
        hint=_HINT_INSTALL,
    )


def config_path(paths: Paths) -> Path:
    """The generated haproxy.cfg."""
    return paths.haproxy_dir / CONFIG_NAME


def state_path(paths: Paths) -> Path:
    """The router's desired state, from which haproxy.cfg is generated."""
    return paths.haproxy_dir / STATE_NAME


def log_path(paths: Paths) -> Path:
    """Where HAProxy's stdout and stderr go: its messages and the traffic log lines."""
    return paths.haproxy_dir / LOG_NAME


def haproxy_argv(paths: Paths) -> list[str]:
    """The command line that runs HAProxy in the foreground (for supervisord or a test).

    `-W` is master-worker mode without `-D`, so the master stays in the
    foreground as the supervised process; `-S` opens the master CLI, which
    reloads and reaches old workers.
    """
    master = str(paths.haproxy_master_socket)
    if "," in master:
        raise RouterError(
            f"haproxy: the master socket path {master} contains a comma, "
            "which HAProxy's -S option cannot take",
            hint="use a Conveyor home (CONVEYOR_HOME) whose path has no comma",
        )
    return [
        str(haproxy_executable()),
        "-W",
        "-S",
        f"{master},mode,600",
        "-f",
        str(config_path(paths)),
    ]


# ---------------------------------------------------------------------------
# State


@dataclass
class EnvironmentState:
    """One environment: where it listens, its routes, and backends per service."""

    listen: str
    routes: list[RouteSpec]
    backends: dict[str, dict[str, int]]  # service -> address -> weight (as asked)
    # `tls:`: the certificate+key PEM in the router's private dir, and its content's digest
    tls_pem: str | None = None
    tls_digest: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "listen": self.listen,
            "tls_pem": self.tls_pem,
            "tls_digest": self.tls_digest,
            "routes": [
                {
                    "service": r.service,
                    "path": r.path,
                    "host": r.host,
                    "strip_prefix": r.strip_prefix,
                }
                for r in self.routes
            ],
            "backends": self.backends,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> EnvironmentState:
        routes = [
            RouteSpec(
                service=str(r["service"]),
                path=str(r.get("path", "/")),
                host=r.get("host") or None,
                strip_prefix=bool(r.get("strip_prefix", False)),
            )
            for r in raw.get("routes", [])
        ]
        backends = {
            str(service): {str(a): int(w) for a, w in weights.items()}
            for service, weights in (raw.get("backends") or {}).items()
        }
        return cls(
            listen=str(raw["listen"]),
            routes=routes,
            backends=backends,
            tls_pem=raw.get("tls_pem") or None,
            tls_digest=raw.get("tls_digest") or None,
        )


@dataclass
class RouterState:
    """Everything HAProxy must route, plus traffic counters carried across reloads.

    `carried` maps backend -> server -> [requests, 1xx, 2xx, 3xx, 4xx, 5xx]:
    what previous workers had counted when the router reloaded HAProxy (a
    reload starts a worker with zeroed counters).
    """

    environments: dict[str, EnvironmentState] = field(default_factory=dict)
    carried: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "environments": {
                name: env.to_json() for name, env in sorted(self.environments.items())
            },
            "carried": self.carried,
        }

    @classmethod
    def load(cls, path: Path) -> RouterState:
        """The saved state; an empty one when there is none yet."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise RouterError(
                f"haproxy: cannot read the router state {path}: {exc.strerror}",
                hint="check the file's permissions",
            ) from None
        try:
            raw = json.loads(text)
            environments = {
                str(name): EnvironmentState.from_json(env)
                for name, env in raw.get("environments", {}).items()
            }
            carried = {
                str(backend): {str(s): [int(n) for n in counts] for s, counts in servers.items()}
                for backend, servers in (raw.get("carried") or {}).items()
            }
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise RouterError(
                f"haproxy: the router state {path} is damaged ({type(exc).__name__}: {exc})",
                hint=f"restore it from a backup, or delete it and deploy every environment "
                f"again (HAProxy keeps routing with {CONFIG_NAME} until then)",
            ) from None
        return cls(environments=environments, carried=carried)

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------
# Names


def frontend_name(environment: str) -> str:
    """`conveyor.<env>`: environment names have no '.', so names never collide."""
    return f"conveyor.{environment}"


def backend_name(environment: str, service: str) -> str:
    """`conveyor.<env>.<service>`."""
    return f"conveyor.{environment}.{service}"


def unrouted_backend_name(environment: str) -> str:
    """The backend answering 404 (service names never start with '.')."""
    return f"conveyor.{environment}..unrouted"


def server_name(address: str) -> str:
    """The HAProxy server name of a backend address (brackets are not allowed in names).

    >>> server_name("127.0.0.1:8001"), server_name("[::1]:8001")
    ('127.0.0.1:8001', '::1:8001')
    """
    return address.replace("[", "").replace("]", "")


def haproxy_weights(weights: Mapping[str, int]) -> dict[str, int]:
    """Weights as HAProxy takes them (0..256): scaled down, keeping the shares, when larger.

    A weight above 0 never becomes 0.

    >>> haproxy_weights({"a": 1, "b": 3})
    {'a': 1, 'b': 3}
    >>> haproxy_weights({"a": 1, "b": 999, "c": 0, "d": 512})
    {'a': 1, 'b': 256, 'c': 0, 'd': 131}
    """
    top = max(weights.values(), default=0)
    if top <= MAX_WEIGHT:
        return dict(weights)
    return {a: max(1, round(w * MAX_WEIGHT / top)) if w > 0 else 0 for a, w in weights.items()}


def order_routes(routes: Iterable[RouteSpec]) -> list[RouteSpec]:
    """Longest path prefix first; at equal length a host-specific route first (as Caddy).

    >>> specs = [RouteSpec("web"), RouteSpec("api", "/api"), RouteSpec("v2", "/api/v2"),
    ...          RouteSpec("adm", "/", "a.example")]
    >>> [r.service for r in order_routes(specs)]
    ['v2', 'api', 'adm', 'web']
    """
    return sorted(routes, key=route_order)


# ---------------------------------------------------------------------------
# Config rendering


def route_condition(spec: RouteSpec) -> str:
    """The `use_backend` condition of a route ("" matches every request).

    A prefix matches itself and what follows a '/', never a longer segment:

    >>> route_condition(RouteSpec("api", "/api"))
    "if { path '/api' } || { path_beg '/api/' }"
    >>> route_condition(RouteSpec("adm", "/", "Admin.example"))
    "if { req.hdr(host),field(1,:),lower -m str 'admin.example' }"
    >>> route_condition(RouteSpec("web"))
    ''
    """
    host = f"{{ req.hdr(host),field(1,:),lower -m str '{spec.host.lower()}' }}" if spec.host else ""
    if spec.path == "/":
        return f"if {host}" if host else ""
    exact = f"{{ path '{spec.path}' }}"
    below = f"{{ path_beg '{spec.path}/' }}"
    if host:
        return f"if {host} {exact} || {host} {below}"
    return f"if {exact} || {below}"


def _pcre_escape(text: str) -> str:
    # A backslash before a non-alphanumeric character is a literal in PCRE.
    return "".join(c if c.isalnum() or c == "/" else "\\" + c for c in text)


def render_layout(paths: Paths, state: RouterState) -> list[str]:
    """The config without `server` lines and without the layout digest, as lines.

    Each backend section ends with a `#servers <backend>` marker line that
    `render_config` replaces with the backend's `server` lines.
    """
    socket_path = paths.haproxy_socket
    lines = [
        f"# Generated by Conveyor from {STATE_NAME}; edits are overwritten.",
        "global",
        f"    stats socket {socket_path} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        "    log stdout format raw local0",
        f"    hard-stop-after {HARD_STOP_AFTER}",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        f'    log-format "{TRAFFIC_TAG} %b %s %ST %Ta %Tr"',
        # No `option http-server-close`: clients keep their connections alive.
        "    option idle-close-on-response",
        "    http-reuse safe",
        "    option forwardfor",
        "    option redispatch",
        "    retries 2",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout http-request 30s",
        # Also how long an old worker may live on after a reload for idle
        # keep-alive connections (see HAProxyRouter.drain).
        "    timeout http-keep-alive 10s",
        "    timeout server 5m",
        "    timeout queue 30s",
        "    default-server init-addr libc,none",
    ]
    for environment, env in sorted(state.environments.items()):
        specs = order_routes(env.routes)
        lines += [
            "",
            f"frontend {frontend_name(environment)}",
        ]
        if env.tls_pem:
            lines += [
                # the digest makes a renewed certificate a new layout: a reload reads it
                f"    # tls {env.tls_digest}",
                f"    bind {env.listen} ssl crt {env.tls_pem}",
            ]
        else:
            lines.append(f"    bind {env.listen}")
        scheme = "https" if env.tls_pem else "http"
        lines += [
            "    http-request del-header X-Forwarded-For",
            f"    http-request set-header X-Forwarded-Proto {scheme}",
            "    http-request set-header X-Forwarded-Host %[req.hdr(host)] "
            "if { req.hdr(host) -m found }",
        ]
        for spec in specs:
            condition = route_condition(spec)
            rule = f"    use_backend {backend_name(environment, spec.service)}"
            lines.append(f"{rule} {condition}" if condition else rule)
        lines.append(f"    default_backend {unrouted_backend_name(environment)}")
        for spec in specs:
            name = backend_name(environment, spec.service)
            lines += [
                "",
                f"backend {name}",
                "    balance roundrobin",  # a dynamic algorithm: servers added at runtime
                # HAProxy's own 503 when no server has a weight (or none could be
                # reached). Not `nbsrv()`: that is 0 in an old worker finishing
                # its keep-alive connections after a reload, whose servers still work.
                '    http-error status 503 content-type "text/plain; charset=utf-8" '
                f'string "no healthy instance of {spec.service}\\n"',
            ]
            if spec.strip_prefix and spec.path != "/":
                lines.append(
                    f"    http-request replace-path '^{_pcre_escape(spec.path)}/?(.*)$' '/\\1'"
                )
            lines.append(f"#servers {name}")
        lines += [
            "",
            f"backend {unrouted_backend_name(environment)}",
            '    http-request return status 404 content-type "text/plain; charset=utf-8" '
            f'string "no route for this request in environment {environment}\\n"',
        ]
    return lines


def layout_digest(layout: list[str]) -> str:
    """What identifies a layout: reported by a worker that loaded it (`show env`)."""
    return hashlib.sha256("\n".join(layout).encode()).hexdigest()[:20]


def server_line(address: str, weight: int) -> str:
    return f"    server {server_name(address)} {address} weight {weight} {SERVER_OPTIONS}"


def render_config(paths: Paths, state: RouterState) -> tuple[str, str]:
    """haproxy.cfg for `state`, and its layout digest."""
    layout = render_layout(paths, state)
    digest = layout_digest(layout)
    servers: dict[str, list[str]] = {}
    for environment, env in state.environments.items():
        for spec in env.routes:
            weights = haproxy_weights(env.backends.get(spec.service, {}))
            servers[backend_name(environment, spec.service)] = [
                server_line(address, weight) for address, weight in sorted(weights.items())
            ]
    lines: list[str] = []
    for line in layout:
        if line.startswith("#servers "):
            lines += servers.get(line.removeprefix("#servers "), [])
        else:
            lines.append(line)
            if line == "global":
                lines.append(f"    setenv {LAYOUT_ENV} {digest}")
    return "\n".join(lines) + "\n", digest


def check_config(text: str, directory: Path) -> None:
    """Have HAProxy check a config (`haproxy -c`, ~40 ms); RouterError with its alerts."""
    directory.mkdir(parents=True, exist_ok=True)
    candidate = directory / f".{CONFIG_NAME}.check"
    candidate.write_text(text, encoding="utf-8")
    try:
        result = subprocess.run(
            [str(haproxy_executable()), "-c", "-q", "-f", str(candidate)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RouterError(
            f"haproxy: could not run `haproxy -c` to check the generated config: {exc}",
            hint=_HINT_INSTALL,
        ) from None
    finally:
        candidate.unlink(missing_ok=True)
    if result.returncode != 0:
        alerts = [
            line.strip()
            for line in (result.stdout + result.stderr).splitlines()
            if "ALERT" in line or "error" in line.lower()
        ]
        detail = "\n".join(alerts[:10]) or (result.stdout + result.stderr).strip()[-2000:]
        raise RouterError(
            f"haproxy: HAProxy refused the generated config:\n{detail}",
            hint="nothing was changed; this is a bug in Conveyor's HAProxy config "
            "generation unless a route or address in conveyor.yml is unusual",
        )


def write_config(paths: Paths, state: RouterState, *, check: bool = True) -> str:
    """Write haproxy.cfg for `state` (atomically); returns its layout digest.

    With `check`, HAProxy validates the file first and a refused config
    leaves the current file in place.
    """
    text, digest = render_config(paths, state)
    target = config_path(paths)
    if check:
        check_config(text, paths.haproxy_dir)
    atomic_write_text(target, text)
    return digest


# ---------------------------------------------------------------------------
# Talking to HAProxy


async def send_command(socket_path: Path, command: str, *, timeout: float = 10.0) -> str:
    """Send one command line (commands may be joined with ';') and return the answer.

    Works for the stats socket and the master CLI (both answer, then close
    once the client has closed its side). OSError / TimeoutError on failure.
    """

    async def exchange() -> str:
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            return (await reader.read()).decode(errors="replace")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(exchange(), timeout)


async def master_command(
    paths: Paths, command: str, *, timeout: float = 10.0, wait: float = 5.0
) -> str:
    """A command on the master CLI, waiting up to `wait` s while a reload re-executes it.

    OSError / TimeoutError when it does not answer.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return await send_command(paths.haproxy_master_socket, command, timeout=timeout)
        except (ConnectionRefusedError, FileNotFoundError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.01)


async def running_layout(paths: Paths, *, timeout: float = 10.0) -> str | None:
    """The layout digest of the worker answering on the stats socket (None: unknown)."""
    answer = await send_command(paths.haproxy_socket, f"show env {LAYOUT_ENV}", timeout=timeout)
    prefix = f"{LAYOUT_ENV}="
    for line in answer.splitlines():
        if line.startswith(prefix):
            return line.removeprefix(prefix).strip()
    return None


async def haproxy_answers(paths: Paths, timeout: float = 1.0) -> bool:
    """Whether a worker answers on the stats socket."""
    try:
        await send_command(paths.haproxy_socket, "show env " + LAYOUT_ENV, timeout=timeout)
    except (OSError, TimeoutError):
        return False
    return True


def _log_size(paths: Paths) -> int:
    try:
        return log_path(paths).stat().st_size
    except OSError:
        return 0


def _log_since(paths: Paths, offset: int) -> str:
    try:
        with log_path(paths).open("rb") as handle:
            handle.seek(offset)
            return handle.read(1_000_000).decode(errors="replace")
    except OSError:
        return ""


def _reload_failure(text: str) -> str | None:
    """The master's alerts when the log shows a failed reload."""
    if "Loading failure!" not in text:
        return None
    alerts = [
        line.strip()
        for line in text.splitlines()
        if not line.startswith(TRAFFIC_TAG) and ("[ALERT]" in line or "[WARNING]" in line)
    ]
    return "\n".join(alerts[-10:]) or "Loading failure!"


async def reload_haproxy(paths: Paths, expect_layout: str, *, timeout: float = 15.0) -> None:
    """Reload HAProxy (`reload` on the master CLI) and wait for a worker with `expect_layout`.

    Seamless: listeners move to the new worker, the old one finishes what it
    serves. A failed reload leaves the old worker running (RouterError with
    HAProxy's alerts, read from its log).
    """
    offset = _log_size(paths)
    try:
        # The master re-executes itself and closes this connection: no answer.
        await master_command(paths, "reload", timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise RouterError(
            f"haproxy: cannot reach the master CLI on {paths.haproxy_master_socket} "
            f"to reload HAProxy: {exc}",
            hint=_HINT_NOT_RUNNING,
        ) from None
    deadline = time.monotonic() + timeout
    loaded = False
    while True:
        await asyncio.sleep(0.01)
        with contextlib.suppress(OSError, TimeoutError):
            remaining = max(deadline - time.monotonic(), 0.1)
            loaded = loaded or await running_layout(paths, timeout=remaining) == expect_layout
            # The re-executed master opens its CLI last: the next reload needs it.
            if loaded and await master_command(paths, "show proc", timeout=remaining, wait=0):
                return
        failure = _reload_failure(_log_since(paths, offset))
        if failure is not None:
            raise RouterError(
                f"haproxy: HAProxy could not load its new config and keeps running the "
                f"previous one:\n{failure}",
                hint=f"fix the cause above (often a listen address in use) and retry; "
                f"see {log_path(paths)}",
            )
        if time.monotonic() > deadline:
            raise RouterError(
                f"haproxy: no HAProxy worker runs the new config {timeout:g}s after a reload",
                hint=f"see {log_path(paths)}; {_HINT_NOT_RUNNING}",
            )


# ---------------------------------------------------------------------------
# Under supervisord


def prepare(paths: Paths) -> None:
    """Create HAProxy's directories and write haproxy.cfg from the saved state."""
    paths.haproxy_dir.mkdir(parents=True, exist_ok=True)
    paths.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_config(paths, RouterState.load(state_path(paths)))


async def ensure_for(rt: Runtime, environments: Sequence[str]) -> None:
    """The `haproxy` plugin's `ensure`: HAProxy runs under the home's supervisord (one for
    every environment)."""
    await rt.ensure_supervisor()
    await ensure_haproxy(rt.supervisor, rt.paths)


async def ensure_haproxy(supervisor: Supervisor, paths: Paths, *, timeout: float = 15.0) -> None:
    """Start HAProxy under supervisord (program `conveyor-haproxy`) unless it answers already.

    The config is generated from the saved state first, so a started HAProxy
    routes as the last router change left it.
    """
    await asyncio.to_thread(supervisor.ensure_running)
    if await haproxy_answers(paths):
        return
    from conveyor.routers.exclusive import refuse_other_listeners

    info = await asyncio.to_thread(supervisor.program_info, PROGRAM)
    listens = [env.listen for env in RouterState.load(state_path(paths)).environments.values()]
    refuse_other_listeners("haproxy", listens, info.status.pid if info is not None else None)
    await asyncio.to_thread(prepare, paths)
    await asyncio.to_thread(
        supervisor.add_program,
        PROGRAM,
        haproxy_argv(paths),
        cwd=paths.haproxy_dir,
        env={},
        stdout_log=log_path(paths),
        stop_timeout=30.0,
        owner="haproxy",
        # USR1 is HAProxy's soft stop: stop listening, finish in-flight requests.
        stop_signal="USR1",
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await haproxy_answers(paths):
            return
        info = await asyncio.to_thread(supervisor.program_info, PROGRAM)
        if info is not None and info.supervisor_state in ("FATAL", "EXITED", "STOPPED"):
            break
        await asyncio.sleep(0.05)
    tail = _log_since(paths, max(0, _log_size(paths) - 4000)).strip().splitlines()[-8:]
    raise RouterError(
        f"HAProxy did not start: its stats socket {paths.haproxy_socket} does not answer"
        + ("\n" + "\n".join(tail) if tail else ""),
        hint=f"look at {log_path(paths)}",
    )


def port_is_free(listen: str) -> bool:
    """Whether `[host]:port` can be bound (False when in use; RouterError when not ours)."""
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
                f"haproxy: cannot listen on {listen}: {exc.strerror}",
                hint="use an address of this host, e.g. 127.0.0.1:8080",
            ) from None
    return True
