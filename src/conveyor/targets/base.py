"""The `Target` protocol: where instances of a release run."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from conveyor.runas import RunUser

# Instance states reported by a target.
STARTING = "starting"
RUNNING = "running"
BACKOFF = "backoff"  # crashed and being restarted by the supervisor
STOPPED = "stopped"
EXITED = "exited"
FATAL = "fatal"  # the supervisor gave up restarting it
UNKNOWN = "unknown"

LOCAL_HOST = "local"  # the name of the machine Conveyor runs on, as a host of instances

# Who a supervisord program belongs to (its conf's meta): targets list instances only.
INSTANCE_OWNER = "instance"
ACCESSORY_OWNER = "accessory"  # an accessory's program, named `ACCESSORY_PREFIX...`
ACCESSORY_PREFIX = "accessory."  # environment and service names never hold a "."
ROUTER_PREFIX = "router."  # the router's program on a host of the fleet (`router_host:`)


@dataclass(frozen=True)
class Endpoint:
    """Where an instance listens: chosen by its target, on its host, before it starts."""

    host: str  # the host's name ("local", or a name from the environment's hosts)
    listen: str  # the interface it binds (its $HOST), reachable by the router
    port: int

    @property
    def address(self) -> str:
        """ "ip:port", as routers and health checks reach it."""
        return join_address(self.listen, self.port)


def join_address(host: str, port: int) -> str:
    """`host:port`, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_address(address: str) -> tuple[str, int]:
    """The host and port of `host:port` (IPv6 in brackets)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a target needs to run one instance of a release."""

    name: str  # unique per Conveyor home, e.g. "staging-api-3f2a9c1e-1"
    environment: str
    service: str
    release_id: str
    release_dir: Path  # working directory; read-only
    command: list[str]  # argv; a shell command arrives as ["/bin/sh", "-c", "..."]
    env: dict[str, str]  # added to the instance's environment (PORT, CONVEYOR_* included)
    port: int  # 0: a worker, which listens on none
    stop_timeout: float  # seconds between the stop signal and SIGKILL
    log_path: Path  # stdout and stderr of the instance, appended
    user: RunUser | None = None  # who it runs as; None: Conveyor's own user
    host: str = LOCAL_HOST  # the host it runs on (its target reserved its port there)
    owner: str = INSTANCE_OWNER  # ACCESSORY_OWNER: an accessory, run the same way
    stop_signal: str = "TERM"  # what asks it to stop (`stop_signal:`)
    # The stop signal to the whole process group (True) or to its own process only (a
    # worker: Celery's main process has its pool finish the running tasks, which a
    # signal of their own would kill). SIGKILL after `stop_timeout` goes to the group.
    stop_as_group: bool = True


def accessory_program(environment: str, name: str) -> str:
    """The supervisord program of accessory `name` of `environment`."""
    return f"{ACCESSORY_PREFIX}{environment}.{name}"


def is_accessory(name: str) -> bool:
    """Whether the program `name` is an accessory's, not an instance's."""
    return name.startswith(ACCESSORY_PREFIX)


def is_instance(name: str) -> bool:
    """Whether the program `name` is an instance's (not an accessory's nor a router's)."""
    return not name.startswith((ACCESSORY_PREFIX, ROUTER_PREFIX))


@dataclass(frozen=True)
class InstanceStatus:
    """What the target observes of one instance."""

    name: str
    state: str  # one of the constants above
    pid: int | None = None
    started_at: float | None = None  # epoch seconds of the current process start
    restarts: int = 0  # times the process exited unexpectedly and was restarted
    detail: str = ""


@dataclass(frozen=True)
class CommandResult:
    """Outcome of a one-off command."""

    exit_code: int
    output: str
    duration: float
    timed_out: bool = False
    extra: dict[str, str] = field(default_factory=dict)


class Target(Protocol):
    """Runs, stops and observes instances on its hosts. All methods are idempotent.

    A target is registered by name in `conveyor.plugins` (`target:` in conveyor.yml).
    """

    name: str  # its registry name ("local")
    ships_releases: bool  # whether a release must be shipped to a host before it starts there

    def hosts(self, roles: Sequence[str] = ()) -> tuple[str, ...]:
        """The names of the hosts it runs instances on (placement spreads over them): those
        that carry one of `roles` (a service's), all of them without roles."""
        ...

    async def reserve(self, host: str, taken: set[int], ports: range) -> Endpoint:
        """Pick a free port of `ports` on `host`, not one of `taken` (recorded instances
        of that host); the caller records the endpoint before the instance starts."""
        ...

    async def ship(self, host: str, release_dir: Path, digest: str) -> None:
        """Put the sealed release at `release_dir` on `host` and check its digest there."""
        ...

    async def start(self, spec: InstanceSpec) -> None:
        """Start the instance (no-op if it is already running under this name)."""
        ...

    async def stop(self, name: str, timeout: float) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after `timeout`) and forget it.

        No-op when no such instance exists.
        """
        ...

    async def status(self, name: str) -> InstanceStatus:
        """The state of one instance; state UNKNOWN when the target has none."""
        ...

    async def list(self) -> builtins.list[InstanceStatus]:
        """Every instance this target runs for the Conveyor home."""
        ...

    async def logs(self, name: str, lines: int) -> builtins.list[str]:
        """The last `lines` lines of the instance's output."""
        ...

    def follow(self, name: str, lines: int) -> AsyncIterator[str]:
        """The last `lines` lines, then every new line as it is written."""
        ...

    async def run_command(
        self,
        command: builtins.list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        log_path: Path | None = None,
        user: RunUser | None = None,
    ) -> CommandResult:
        """Run a one-off command in a release's context (migrations, hooks), as `user`
        (None: Conveyor's own); its output is also appended to `log_path`."""
        ...

    async def run_attached(
        self,
        command: builtins.list[str],
        cwd: Path,
        env: dict[str, str],
        user: RunUser | None = None,
    ) -> int:
        """Run a one-off command, as `user`, attached to this process's stdin, stdout and stderr
        (`conveyor run`: interactive on a terminal) and return its exit status, a
        shell's way (128+N when killed by signal N). Raises `CommandNotRunError`
        when the command cannot be started."""
        ...
