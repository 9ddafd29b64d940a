"""The pieces one command works with: config, paths, store, targets and routers.

Target and router are built on first use so that read-only commands such as
`conveyor status` never start supervisord or Caddy.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from conveyor.errors import UsageError
from conveyor.paths import Paths
from conveyor.plugins import ROUTERS, TARGETS, Plugin

if TYPE_CHECKING:
    from conveyor.config import EnvironmentConfig, LoadedConfig
    from conveyor.notify.hub import NotificationHub
    from conveyor.routers.base import Router
    from conveyor.store import Store
    from conveyor.targets.base import Target
    from conveyor.targets.supervisor import Supervisor


@dataclass
class Runtime:
    """Everything a command needs, created once per CLI invocation."""

    loaded: LoadedConfig
    paths: Paths
    store: Store
    user: str
    notes: list[str] = field(default_factory=list)  # warnings for the user, shown once
    _plugins: dict[tuple[int, str, str], Any] = field(default_factory=dict, repr=False)
    _supervisor_checked: bool = field(default=False, repr=False)
    _secrets: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, loaded: LoadedConfig, user: str) -> Runtime:
        from conveyor.store import open_store

        paths = Paths.for_project(loaded.root).ensure()
        url = os.environ.get("CONVEYOR_STATE_URL") or f"sqlite:///{paths.state_db}"
        return cls(loaded=loaded, paths=paths, store=open_store(url), user=user)

    def environment(self, name: str) -> EnvironmentConfig:
        envs = self.loaded.config.environments
        if name not in envs:
            known = ", ".join(sorted(envs)) or "none"
            raise UsageError(
                f'unknown environment "{name}" (environments are: {known})',
                hint=f"environments are declared under environments: in {self.loaded.path}",
            )
        return envs[name]

    def secrets(self, environment: str) -> dict[str, str]:
        """The values of the environment's `secrets:`, resolved once per command (and
        masked in every output from then on); `SecretsError` names what is missing.
        Only what starts processes asks: status and history never do."""
        if environment not in self._secrets:
            from conveyor.secrets.resolve import resolve

            self._secrets[environment] = resolve(self.loaded, environment)
        return self._secrets[environment]

    def use_secrets(self, environment: str, values: dict[str, str]) -> None:
        """Take `values` as the environment's resolved secrets (the agent gets them from
        the deploy that started it; the caller registered them for masking)."""
        self._secrets[environment] = dict(values)

    @cached_property
    def notifications(self) -> NotificationHub:
        from conveyor.notify.hub import NotificationHub

        return NotificationHub(self)

    @cached_property
    def supervisor(self) -> Supervisor:
        from conveyor.targets.supervisor import Supervisor

        supervisor = Supervisor(self.paths)
        supervisor.preflight.append(self._routers_alone)
        return supervisor

    def _routers_alone(self) -> None:
        """Before supervisord starts (and with it the routers it had): refuse when another
        program listens on an address one of them would take."""
        from conveyor.routers.caddy_platform import CADDY_PROGRAM
        from conveyor.routers.caddy_process import resumed_listens
        from conveyor.routers.exclusive import refuse_other_listeners
        from conveyor.routers.haproxy_process import PROGRAM, RouterState, state_path

        if self.supervisor.program_conf_path(CADDY_PROGRAM).exists():
            refuse_other_listeners("caddy", resumed_listens(self.paths))
        if self.supervisor.program_conf_path(PROGRAM).exists():
            state = RouterState.load(state_path(self.paths))
            refuse_other_listeners("haproxy", [e.listen for e in state.environments.values()])

    def target_for(self, environment: str) -> Target:
        """The target the environment's config names (`target:`, from `conveyor.plugins`)."""
        target: Target = self._plugin(TARGETS, self.environment(environment).target, environment)
        return target

    def router_for(self, environment: str) -> Router:
        """The router the environment's config names (`router:`, from `conveyor.plugins`)."""
        router: Router = self._plugin(ROUTERS, self.environment(environment).router, environment)
        return router

    def _plugin(self, registry: dict[str, Plugin], name: str, environment: str) -> Any:
        """Built once per command (per environment when the plugin says so)."""
        plugin = registry[name]  # the config allows registered names only
        key = (id(registry), name, environment if plugin.per_environment else "")
        if key not in self._plugins:
            self._plugins[key] = plugin.build(self, environment)
        return self._plugins[key]

    async def ensure_platform(self, environment: str | None = None) -> None:
        """Start what the target and the router need when it is not running (for the local
        target, Caddy and HAProxy: supervisord, and the routers under it).

        With an environment, only its target and router; without, every one in use.
        """
        names = [environment] if environment else list(self.loaded.config.environments)
        for registry, key in ((TARGETS, "target"), (ROUTERS, "router")):
            by_kind: dict[str, list[str]] = {}
            for name in names:
                by_kind.setdefault(getattr(self.environment(name), key), []).append(name)
            for kind, environments in by_kind.items():
                await registry[kind].ensure_running(self, environments)

    async def recheck_platform(self, environment: str) -> None:
        """`ensure_platform` again, though this command checked it already: a failed step
        may have been supervisord killed meanwhile (the router and the local instances die
        with it), and restoring the previous releases needs them back."""
        self._supervisor_checked = False
        await self.ensure_platform(environment)

    async def ensure_supervisor(self) -> None:
        """Start the home's supervisord unless it runs (once per command)."""
        if self._supervisor_checked:
            return
        await asyncio.to_thread(self.supervisor.ensure_running)
        self.notes.extend(self.supervisor.orphan_notes)  # what a dead supervisord left
        self.supervisor.orphan_notes.clear()
        self._supervisor_checked = True

    def close(self) -> None:
        self.store.close()
