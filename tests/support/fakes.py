"""Small in-memory target and router for unit tests of the executor and the deploy flow.

They are registered in `conveyor.plugins` in place of the real ones (see
`use_fakes`), so the executor finds them as it finds any plugin. An instance
of the fake target is "healthy" because `start` opens a real TCP listener on
loopback at its reserved port (the executor's TCP health check connects to
it); a release listed in `FakeTarget.broken` never listens and reports
FATAL, as a crashing app would.
"""

from __future__ import annotations

import asyncio
import builtins
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conveyor import plugins
from conveyor.routers.base import RouteSpec, TrafficStats
from conveyor.runas import RunUser
from conveyor.targets.base import (
    FATAL,
    RUNNING,
    UNKNOWN,
    CommandResult,
    Endpoint,
    InstanceSpec,
    InstanceStatus,
)
from conveyor.targets.ports import free_local_port

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.routers.base import Router
    from conveyor.targets.base import Target


@dataclass
class FakeTarget:
    """Instances on named fake hosts; every host is this machine's loopback underneath."""

    host_names: tuple[str, ...] = ("h1", "h2", "h3")
    broken: set[str] = field(default_factory=set)  # releases whose instances crash
    name: str = "fake"
    ships_releases: bool = True
    running: dict[str, InstanceSpec] = field(default_factory=dict)
    shipped: list[tuple[str, str]] = field(default_factory=list)  # (host, digest)
    _servers: dict[str, asyncio.Server] = field(default_factory=dict)
    _held: dict[int, socket.socket] = field(default_factory=dict)  # reserved, not started

    def hosts(self, roles: Sequence[str] = ()) -> tuple[str, ...]:
        return self.host_names

    async def reserve(self, host: str, taken: set[int], ports: range) -> Endpoint:
        """A free port, held bound until `start` listens on it: the suite's other workers
        bind ports of the same range, and one took a port between the two."""
        assert host in self.host_names, host
        while True:
            port = free_local_port("127.0.0.1", taken | set(self._held), ports)
            held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                held.bind(("127.0.0.1", port))
            except OSError:  # taken since free_local_port looked
                held.close()
                continue
            self._held[port] = held
            return Endpoint(host, "127.0.0.1", port)

    async def ship(self, host: str, release_dir: Path, digest: str) -> None:
        self.shipped.append((host, digest))

    async def start(self, spec: InstanceSpec) -> None:
        assert spec.host in self.host_names, spec.host
        self.running[spec.name] = spec
        if spec.release_id not in self.broken and spec.name not in self._servers:

            async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.close()

            held = self._held.pop(spec.port, None)
            if held is not None:
                self._servers[spec.name] = await asyncio.start_server(answer, sock=held)
            else:
                self._servers[spec.name] = await asyncio.start_server(
                    answer, "127.0.0.1", spec.port
                )

    async def stop(self, name: str, timeout: float) -> None:
        self.running.pop(name, None)
        server = self._servers.pop(name, None)
        if server is not None:
            server.close()
            await server.wait_closed()

    async def status(self, name: str) -> InstanceStatus:
        spec = self.running.get(name)
        if spec is None:
            return InstanceStatus(name, UNKNOWN)
        return InstanceStatus(name, FATAL if spec.release_id in self.broken else RUNNING)

    async def list(self) -> builtins.list[InstanceStatus]:
        return [await self.status(name) for name in self.running]

    async def logs(self, name: str, lines: int) -> builtins.list[str]:
        spec = self.running.get(name)
        return ["boom: cannot start"] if spec and spec.release_id in self.broken else []

    async def follow(self, name: str, lines: int) -> AsyncIterator[str]:
        for line in await self.logs(name, lines):
            yield line

    async def run_command(
        self,
        command: builtins.list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        log_path: Path | None = None,
        user: RunUser | None = None,
    ) -> CommandResult:
        return CommandResult(0, "", 0.0)

    async def run_attached(
        self,
        command: builtins.list[str],
        cwd: Path,
        env: dict[str, str],
        user: RunUser | None = None,
    ) -> int:
        return 0

    async def close(self) -> None:
        for name in builtins.list(self._servers):
            await self.stop(name, 0)

    def on(self, host: str) -> builtins.list[str]:
        """Names of the instances running on `host`."""
        return sorted(n for n, s in self.running.items() if s.host == host)

    def host_of(self, name: str) -> str:
        return self.running[name].host


@dataclass
class FakeRouter:
    """Weights per environment and service; every change is kept in `history`."""

    backends: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    history: list[tuple[str, str, dict[str, int]]] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)

    async def ensure_environment(
        self, environment: str, listen: str, routes: list[RouteSpec], tls: object = None
    ) -> None:
        for route in routes:
            self.backends.setdefault((environment, route.service), {})

    async def remove_environment(self, environment: str) -> None:
        for key in [k for k in self.backends if k[0] == environment]:
            del self.backends[key]

    async def register(self, environment: str, service: str, address: str) -> None:
        self.backends.setdefault((environment, service), {}).setdefault(address, 0)

    async def set_weights(self, environment: str, service: str, weights: dict[str, int]) -> None:
        known = self.backends.setdefault((environment, service), {})
        unknown = set(weights) - set(known)
        assert not unknown, f"weights for unregistered backends {unknown}"
        known.update(weights)
        self.history.append((environment, service, dict(known)))

    async def weights(self, environment: str, service: str) -> dict[str, int]:
        return dict(self.backends.get((environment, service), {}))

    async def drain(self, environment: str, service: str, address: str, timeout: float) -> int:
        self.backends.get((environment, service), {})[address] = 0
        self.drained.append(address)
        return 0

    async def remove(self, environment: str, service: str, address: str) -> None:
        self.backends.get((environment, service), {}).pop(address, None)

    async def traffic_stats(self, environment: str, service: str) -> dict[str, TrafficStats]:
        return {a: TrafficStats(a) for a in self.backends.get((environment, service), {})}

    def serving(self, environment: str, service: str) -> set[str]:
        """Addresses with a weight above 0."""
        return {a for a, w in self.backends.get((environment, service), {}).items() if w > 0}


def build_target(rt: Runtime, environment: str) -> FakeTarget:
    return FakeTarget()


def build_router(rt: Runtime, environment: str) -> FakeRouter:
    return FakeRouter()


def use_fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the fakes under the default names (`local`, `caddy`) for this test."""
    monkeypatch.setitem(
        plugins.TARGETS, "local", plugins.Plugin("local", f"{__name__}:build_target", "fake")
    )
    monkeypatch.setitem(
        plugins.ROUTERS, "caddy", plugins.Plugin("caddy", f"{__name__}:build_router", "fake")
    )


if TYPE_CHECKING:

    def _implements(target: FakeTarget, router: FakeRouter) -> tuple[Target, Router]:
        return target, router  # mypy checks that the fakes satisfy the protocols


__all__: list[Any] = ["FakeRouter", "FakeTarget", "use_fakes"]
