"""The router conformance suite (conformance.py) against a real Caddy and a real HAProxy.

Each router runs as its own process for this module, as supervisord would
run it; every test runs once per router (`test_x[caddy]`, `test_x[haproxy]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conveyor.routers.base import Router
from conveyor.routers.caddy import CaddyRouter
from conveyor.routers.haproxy import HAProxyRouter
from tests.routers.conformance import *  # noqa: F403  (the tests and their fixtures)
from tests.routers.conformance import RouterHarness
from tests.routers.conftest import CaddyProcess, HAProxyProcess


@dataclass
class CaddyHarness:
    process: CaddyProcess
    state_dir: Path
    name: str = "caddy"
    reloads_on_weight_change: bool = True
    traffic_window: str = "conveyor.routers.caddy.TRAFFIC_WINDOW"
    router: Router = field(init=False)

    def __post_init__(self) -> None:
        self.router = self.fresh()

    def fresh(self) -> Router:
        return CaddyRouter(self.process.paths.caddy_admin_socket, self.state_dir)

    def restart(self) -> None:
        self.process.stop()
        self.process.start()


@dataclass
class HAProxyHarness:
    process: HAProxyProcess
    name: str = "haproxy"
    reloads_on_weight_change: bool = False
    traffic_window: str = "conveyor.routers.haproxy.TRAFFIC_WINDOW"
    router: Router = field(init=False)

    def __post_init__(self) -> None:
        self.router = self.fresh()

    def fresh(self) -> Router:
        return HAProxyRouter(self.process.paths)

    def restart(self) -> None:
        self.process.stop()
        self.process.start()


@pytest.fixture(params=["caddy", "haproxy"])
def harness(request: pytest.FixtureRequest) -> RouterHarness:
    if request.param == "caddy":
        caddy: CaddyProcess = request.getfixturevalue("caddy")
        return CaddyHarness(caddy, caddy.paths.caddy_dir / "router")
    haproxy: HAProxyProcess = request.getfixturevalue("haproxy")
    return HAProxyHarness(haproxy)
