"""The pieces one command works with: config, paths, store, target and router.

Target and router are built on first use so that read-only commands such as
`conveyor status` never start supervisord or Caddy.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import RouterError, UsageError
from conveyor.paths import Paths

if TYPE_CHECKING:
    from conveyor.config import EnvironmentConfig, LoadedConfig
    from conveyor.notify.hub import NotificationHub
    from conveyor.routers.base import Router
    from conveyor.routers.caddy import CaddyRouter
    from conveyor.routers.haproxy import HAProxyRouter
    from conveyor.store import Store
    from conveyor.targets.local import LocalTarget
    from conveyor.targets.supervisor import Supervisor

CADDY_PROGRAM = "conveyor-caddy"
MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def ensure_listener_migration() -> list[str]:
    """Make the kernel hand queued connections to Caddy's new listener on reloads.

    Caddy opens a new SO_REUSEPORT listener on every config change; without
    `net.ipv4.tcp_migrate_req=1` (Linux 5.14+) connections still queued on
    the old one are reset, which would drop requests during a deploy.
    Returns notes for the user: what was changed, or what they should do.
    """
    try:
        if not MIGRATE_REQ.exists() or MIGRATE_REQ.read_text().strip() == "1":
            return []
    except OSError:
        return []
    try:
        MIGRATE_REQ.write_text("1\n")
    except OSError:
        return [
            "net.ipv4.tcp_migrate_req is 0: a connection arriving while Caddy reloads its "
            "config can be reset. Run as root: sysctl -w net.ipv4.tcp_migrate_req=1"
        ]
    return ["set net.ipv4.tcp_migrate_req=1 so that Caddy's config reloads reset no connection"]


@dataclass
class Runtime:
    """Everything a command needs, created once per CLI invocation."""

    loaded: LoadedConfig
    paths: Paths
    store: Store
    user: str
    notes: list[str] = field(default_factory=list)  # warnings for the user, shown once

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

    @cached_property
    def notifications(self) -> NotificationHub:
        from conveyor.notify.hub import NotificationHub

        return NotificationHub(self)

    @cached_property
    def supervisor(self) -> Supervisor:
        from conveyor.targets.supervisor import Supervisor

        return Supervisor(self.paths)

    @cached_property
    def target(self) -> LocalTarget:
        from conveyor.targets.local import LocalTarget

        return LocalTarget(self.supervisor, self.paths)

    @cached_property
    def caddy(self) -> CaddyRouter:
        from conveyor.routers.caddy import CaddyRouter

        return CaddyRouter(self.paths.caddy_admin_socket, self.paths.caddy_dir)

    @cached_property
    def haproxy(self) -> HAProxyRouter:
        from conveyor.routers.haproxy import HAProxyRouter

        return HAProxyRouter(self.paths)

    def router_for(self, environment: str) -> Router:
        """The router the environment's config names."""
        if self.environment(environment).router == "haproxy":
            return self.haproxy
        return self.caddy

    async def ensure_platform(self, environment: str | None = None) -> None:
        """Start supervisord and the router(s) under it when they are not running.

        With an environment, only its router; without, every router in use.
        """
        await asyncio.to_thread(self.supervisor.ensure_running)
        names = [environment] if environment else list(self.loaded.config.environments)
        kinds = {self.environment(name).router for name in names}
        if "caddy" in kinds:
            self.notes.extend(ensure_listener_migration())
            await self._ensure_caddy()
        if "haproxy" in kinds:
            from conveyor.routers.haproxy_process import ensure_haproxy

            await ensure_haproxy(self.supervisor, self.paths)

    async def _ensure_caddy(self) -> None:
        from conveyor.routers.caddy_process import caddy_argv, caddy_env, write_bootstrap_config

        if self.paths.caddy_admin_socket.exists() and await self._caddy_answers():
            return
        write_bootstrap_config(self.paths)
        await asyncio.to_thread(
            self.supervisor.add_program,
            CADDY_PROGRAM,
            caddy_argv(self.paths),
            cwd=self.paths.caddy_dir,
            env=caddy_env(self.paths),
            stdout_log=self.paths.caddy_dir / "caddy.log",
            stop_timeout=30.0,
            owner="caddy",
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if await self._caddy_answers():
                return
            await asyncio.sleep(0.05)
        raise RouterError(
            "Caddy did not start: its admin socket "
            f"{self.paths.caddy_admin_socket} does not answer after 15 s",
            hint=f"look at {self.paths.caddy_dir / 'caddy.log'}",
        )

    async def _caddy_answers(self) -> bool:
        import httpx

        # verify=False: plain HTTP on a unix socket; loading CA certificates costs ~40 ms.
        transport = httpx.AsyncHTTPTransport(uds=str(self.paths.caddy_admin_socket), verify=False)
        try:
            async with httpx.AsyncClient(
                transport=transport, timeout=1.0, trust_env=False
            ) as client:
                response = await client.get("http://localhost/config/")
                return response.status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.store.close()
