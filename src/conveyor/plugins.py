"""The registry of targets and routers, by the names `conveyor.yml` uses.

`target: local | ssh` and `router: caddy | haproxy` in an environment name an
entry here; the config's allowed values are the registered names. A new
target or router is one module with a `build(rt, environment)` function plus
one `Plugin(...)` line below. The module is imported only when an
environment that uses it is deployed, so importing this registry (the config
does) costs nothing.

The SSH target (issue 14 §2) registers here as `Plugin("ssh",
"conveyor.targets.ssh:build", per_environment=True)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime


@dataclass(frozen=True)
class Plugin:
    """A registered implementation: `factory` is "module:function", called as
    function(rt, environment). A shared plugin (per_environment False) is built once
    per command and serves every environment that names it."""

    name: str
    factory: str
    description: str
    per_environment: bool = False
    # "module:function": async function(rt, environments) that starts what the
    # environments that name the plugin need.
    ensure: str = ""

    async def ensure_running(self, rt: Runtime, environments: Sequence[str]) -> None:
        if self.ensure:
            await _load(self.ensure)(rt, environments)

    def build(self, rt: Runtime, environment: str) -> Any:
        make: Callable[[Runtime, str], Any] = _load(self.factory)
        return make(rt, environment)


def _load(path: str) -> Any:
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


def _registry(*plugins: Plugin) -> dict[str, Plugin]:
    return {p.name: p for p in plugins}


TARGETS: dict[str, Plugin] = _registry(
    Plugin(
        "local",
        "conveyor.targets.local:build",
        "this machine, under supervisord",
        ensure="conveyor.targets.local:ensure_running",
    ),
    Plugin(
        "ssh",
        "conveyor.targets.ssh:build",
        "hosts over SSH",
        per_environment=True,
        ensure="conveyor.targets.ssh:ensure_running",
    ),
)

ROUTERS: dict[str, Plugin] = _registry(
    Plugin(
        "caddy",
        "conveyor.routers.caddy:build",
        "embedded Caddy, the default",
        per_environment=True,  # the home's Caddy, or the one on a `router_host`
        ensure="conveyor.routers.caddy_platform:ensure_caddy",
    ),
    Plugin(
        "haproxy",
        "conveyor.routers.haproxy:build",
        "HAProxy from the OS packages",
        ensure="conveyor.routers.haproxy_process:ensure_for",
    ),
)

DEFAULT_TARGET = "local"
DEFAULT_ROUTER = "caddy"
