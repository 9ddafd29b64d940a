"""Running Caddy for the `caddy` router plugin: under supervisord, started on first use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.config.hosts import LOCAL_HOST
from conveyor.errors import RouterError

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.paths import Paths

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


async def ensure_caddy(rt: Runtime, environments: Sequence[str]) -> None:
    """The `caddy` plugin's `ensure`: the Caddy of each environment runs. The home's is
    started under supervisord unless its admin socket answers (and config reloads made to
    keep queued connections, `ensure_listener_migration`); one on a `router_host` is
    started there (`caddy_remote`)."""
    remote = [e for e in environments if rt.environment(e).router_host != LOCAL_HOST]
    if len(remote) < len(environments):
        await rt.ensure_supervisor()  # Caddy runs under it
        rt.notes.extend(ensure_listener_migration())
        await _ensure_caddy(rt)
    if remote:
        from conveyor.routers.caddy_remote import ensure_remote

        for environment in remote:
            await ensure_remote(rt, environment)


async def _ensure_caddy(rt: Runtime) -> None:
    from conveyor.routers.caddy_process import (
        caddy_argv,
        caddy_env,
        resumed_listens,
        write_bootstrap_config,
    )
    from conveyor.routers.exclusive import refuse_other_listeners

    if rt.paths.caddy_admin_socket.exists() and await _caddy_answers(rt.paths):
        return
    info = await asyncio.to_thread(rt.supervisor.program_info, CADDY_PROGRAM)
    own = info.status.pid if info is not None else None
    refuse_other_listeners("caddy", resumed_listens(rt.paths), own)
    write_bootstrap_config(rt.paths)
    await asyncio.to_thread(
        rt.supervisor.add_program,
        CADDY_PROGRAM,
        caddy_argv(rt.paths),
        cwd=rt.paths.caddy_dir,
        env=caddy_env(rt.paths),
        stdout_log=rt.paths.caddy_dir / "caddy.log",
        stop_timeout=30.0,
        owner="caddy",
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if await _caddy_answers(rt.paths):
            return
        await asyncio.sleep(0.05)
    raise RouterError(
        "Caddy did not start: its admin socket "
        f"{rt.paths.caddy_admin_socket} does not answer after 15 s",
        hint=f"look at {rt.paths.caddy_dir / 'caddy.log'}",
    )


async def _caddy_answers(paths: Paths) -> bool:
    import httpx

    # verify=False: plain HTTP on a unix socket; loading CA certificates costs ~40 ms.
    transport = httpx.AsyncHTTPTransport(uds=str(paths.caddy_admin_socket), verify=False)
    try:
        async with httpx.AsyncClient(transport=transport, timeout=1.0, trust_env=False) as client:
            response = await client.get("http://localhost/config/")
            return response.status_code == 200
    except httpx.HTTPError:
        return False
