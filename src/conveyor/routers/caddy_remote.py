"""The `caddy` router on one of an environment's hosts (`router_host: HOST`).

Caddy runs there under the project's supervisord (the SSH target's), as the program
`router.caddy`, from a copy of the deployer's Caddy binary (`lib/caddy`), with its admin
API on a unix socket in the host's private `run/` directory. Conveyor reaches that API
through an SSH forward of the socket to a socket of its own (in the deployer's private
run directory, one per process, removed when the process ends), so `CaddyRouter` drives
it exactly as it drives the local Caddy. What differs:

* Caddy writes the access log on the host. Each count first copies the lines appended
  since the previous count (one SSH command, which also follows Caddy's rolls) to the
  end of a local copy, `access-<env>.log` in the local state directory, rolled as Caddy
  rolls its own; the counting is then the local one.
* Whether the listen address is free is asked on the host.
* `ensure_running` copies the binary when the host's differs (SHA-256), writes the
  bootstrap config and has the host's supervisord run Caddy (`SshTarget.run_program`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import httpx

from conveyor.errors import RouterError
from conveyor.releases.digest import hash_file
from conveyor.routers.caddy import (
    ACCESS_LOG_ROLL_KEEP,
    ACCESS_LOG_ROLL_MB,
    CaddyRouter,
    rolled_logs,
)
from conveyor.routers.caddy_process import (
    BOOTSTRAP_NAME,
    atomic_write_text,
    bootstrap_config,
    caddy_executable,
)
from conveyor.routers.caddy_process import run_argv as caddy_run_argv
from conveyor.ssh.connection import COMMAND_TIMEOUT
from conveyor.ssh.layout import RemoteLayout
from conveyor.targets.base import ROUTER_PREFIX
from conveyor.targets.ssh_programs import free_port_argv

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.ssh.hosts import HostSpec
    from conveyor.targets.ssh import SshTarget

__all__ = ["PROGRAM", "RemoteCaddyRouter", "build_remote", "ensure_remote"]

PROGRAM = f"{ROUTER_PREFIX}caddy"  # its supervisord program on the host
START_TIMEOUT = 15.0  # seconds Caddy gets to answer on its admin socket once started
_SOCKET = re.compile(r"caddy-(?P<host>.+)-(?P<pid>\d+)\.sock")

# Prints a JSON header line, then the bytes of the access log from where the copy
# stopped: argv = log, inode, offset. When Caddy rolled the log since, the end of the
# rolled file (found by its inode) comes first, then the new log from its start.
_READ_NEW = r"""
import json, os, sys
log, inode, offset = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout.buffer
try:
    now = os.stat(log)
except FileNotFoundError:
    out.write(b'{"inode": 0, "offset": 0}\n'); sys.exit(0)
parts = []
if inode and now.st_ino != inode:
    stem, dot, suffix = os.path.basename(log).rpartition(".")
    folder = os.path.dirname(log)
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith(stem + "-") and os.stat(path).st_ino == inode:
            parts.append((path, offset))
            break
    parts.append((log, 0))
else:
    parts.append((log, offset if now.st_size >= offset else 0))
end, chunks = 0, []
for path, start in parts:
    with open(path, "rb") as handle:
        handle.seek(start)
        chunks.append(handle.read())
        end = handle.tell()
out.write(json.dumps({"inode": now.st_ino, "offset": end}).encode() + b"\n")
for chunk in chunks:
    out.write(chunk)
"""


def build_remote(rt: Runtime, environment: str) -> RemoteCaddyRouter:
    """The router of an environment whose `router_host` is one of its hosts."""
    from conveyor.targets.ssh import SshTarget

    target = rt.target_for(environment)
    if not isinstance(target, SshTarget):  # the config allows router_host with ssh only
        raise RouterError(f"environment {environment}: router_host needs `target: ssh`")
    host = target.host(rt.environment(environment).router_host)
    return RemoteCaddyRouter(
        target, host, rt.paths.caddy_dir / "hosts" / host.name, rt.paths.run_dir
    )


async def ensure_remote(rt: Runtime, environment: str) -> None:
    """Caddy runs on the environment's router host (started there when it does not)."""
    router = rt.router_for(environment)
    if isinstance(router, RemoteCaddyRouter):
        rt.notes.extend(await router.ensure_running())


class RemoteCaddyRouter(CaddyRouter):
    """`CaddyRouter` on the Caddy of one host of the fleet, reached over SSH."""

    def __init__(
        self,
        target: SshTarget,
        host: HostSpec,
        state_dir: Path,
        run_dir: Path,
        *,
        timeout: float = 10.0,
    ) -> None:
        socket = run_dir / f"caddy-{host.name}-{os.getpid()}.sock"
        super().__init__(socket, state_dir, timeout=timeout)
        self.target = target
        self.host = host
        self.run_dir = run_dir
        self.layout: RemoteLayout = target.layout
        self._forward: Any = None  # the SSH listener of the admin socket's forward
        self._forwarded_over: Any = None  # the SSH connection it belongs to
        self._login: PurePosixPath | None = None  # the login directory on the host
        self._forwarding = asyncio.Lock()  # one forward, however many tasks ask at once

    @property
    def admin_name(self) -> str:
        return f"host {self.host.name} (its Caddy's admin socket, over SSH)"

    # -- paths on the host -------------------------------------------------------

    async def _on_host(self, path: PurePosixPath) -> PurePosixPath:
        """The absolute path on the host of a path of `RemoteLayout` (asks the login
        directory once)."""
        if self._login is None:
            self._login = await self.target.home(self.host)
        return self._login / path

    def _remote_log(self, environment: str) -> PurePosixPath:
        if self._login is None:  # pragma: no cover - every caller asked _on_host() first
            raise RouterError("caddy: the router host's directory is not known yet")
        return self._login / self.layout.caddy_dir / f"access-{environment}.log"

    def caddy_access_log(self, environment: str) -> str:
        return str(self._remote_log(environment))

    # -- the admin API, forwarded --------------------------------------------------

    @contextlib.asynccontextmanager
    async def _admin(self) -> AsyncIterator[httpx.AsyncClient]:
        await self._forwarded()
        async with super()._admin() as client:
            yield client

    async def _forwarded(self) -> None:
        """Forward the local admin socket to Caddy's on the host (again after the SSH
        connection was opened anew)."""
        async with self._forwarding:
            await self._forward_once()

    async def _forward_once(self) -> None:
        connection = await self.target.connections.connection(self.host)
        if self._forward is not None and self._forwarded_over is connection:
            return
        if self._forward is not None:
            self._forward.close()
        remote_socket = await self._on_host(self.layout.caddy_admin_socket)
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _remove_stale_sockets(self.run_dir)
        self.admin_socket.unlink(missing_ok=True)
        try:
            self._forward = await connection.forward_local_path(
                str(self.admin_socket), str(remote_socket)
            )
        except Exception as exc:  # asyncssh's errors and OSError alike
            raise RouterError(
                f"caddy: cannot forward the admin socket of the Caddy on host "
                f"{self.host.describe()} over SSH: {exc}",
                hint="the host's sshd must allow it (`AllowStreamLocalForwarding yes`, "
                "its default)",
            ) from None
        self._forwarded_over = connection
        self.admin_socket.chmod(0o600)
        atexit.register(self.admin_socket.unlink, missing_ok=True)

    async def answers(self) -> bool:
        """Whether Caddy on the host answers on its admin API."""
        try:
            async with self._admin() as client:
                response = await client.get("/config/", timeout=2.0)
                return response.status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    # -- starting it ---------------------------------------------------------------

    async def ensure_running(self) -> list[str]:
        """Start Caddy on the host unless it answers; notes for the user."""
        if await self.answers():
            return []
        notes = await self._listener_migration_notes()
        binary = await self._on_host(self.layout.caddy_binary)
        await self._ship_binary(binary)
        caddy_dir = await self._on_host(self.layout.caddy_dir)
        admin_socket = await self._on_host(self.layout.caddy_admin_socket)
        bootstrap = json.dumps(bootstrap_config(admin_socket), indent=2)
        await self._run(
            [
                "sh",
                "-c",
                'umask 077 && mkdir -p "$1/data" "$1/config" && cat > "$1/$2.tmp" '
                '&& mv -f "$1/$2.tmp" "$1/$2"',
                "sh",
                str(caddy_dir),
                BOOTSTRAP_NAME,
            ],
            "write Caddy's bootstrap config",
            input=bootstrap + "\n",
        )
        await self.target.run_program(
            self.host,
            PROGRAM,
            caddy_run_argv(binary, caddy_dir / BOOTSTRAP_NAME),
            caddy_dir,
            {
                "XDG_DATA_HOME": str(caddy_dir / "data"),
                "XDG_CONFIG_HOME": str(caddy_dir / "config"),
            },
            stop_timeout=30.0,
            owner="caddy",
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if await self.answers():
                return [*notes, f"started Caddy on host {self.host.name}"]
            await asyncio.sleep(0.1)
        raise RouterError(
            f"Caddy did not start on host {self.host.describe()}: its admin socket does not "
            f"answer after {START_TIMEOUT:g} s",
            hint=f"look at `conveyor logs` or {self.layout.instance_logs}/{PROGRAM}.log on "
            "the host",
        )

    async def _ship_binary(self, binary: PurePosixPath) -> None:
        local = caddy_executable()
        digest = (await asyncio.to_thread(hash_file, str(local))).hex()
        found = await self.target.connections.run(
            self.host, ["sha256sum", str(binary)], timeout=COMMAND_TIMEOUT
        )
        if found.exit_status == 0 and found.stdout.split()[:1] == [digest]:
            return
        incoming = f"{binary}.incoming"
        await self.target.connections.put(self.host, local, incoming)
        await self._run(
            ["sh", "-c", 'chmod 755 "$1" && mv -f "$1" "$2"', "sh", incoming, str(binary)],
            "install the Caddy binary",
        )

    async def _listener_migration_notes(self) -> list[str]:
        """Caddy's config reloads reset no queued connection with tcp_migrate_req=1 (a
        setting of the host's kernel, root's to change)."""
        done = await self.target.connections.run(
            self.host, ["cat", "/proc/sys/net/ipv4/tcp_migrate_req"], timeout=COMMAND_TIMEOUT
        )
        if done.exit_status != 0 or done.stdout.strip() != "0":
            return []
        return [
            f"host {self.host.name}: net.ipv4.tcp_migrate_req is 0: a connection arriving "
            "while Caddy reloads its config can be reset. As root on the host, run: "
            "sysctl -w net.ipv4.tcp_migrate_req=1"
        ]

    async def _run(self, argv: list[str], what: str, *, input: str | None = None) -> str:
        done = await self.target.connections.check(
            self.host, argv, what, input=input, error=RouterError, prefix="caddy: "
        )
        return done.stdout

    # -- the host's side of CaddyRouter ------------------------------------------------

    async def listen_is_free(self, listen: str) -> bool:
        host, _, port = listen.rpartition(":")
        argv = free_port_argv(host.strip("[]"), [int(port)])
        done = await self.target.connections.run(self.host, argv, timeout=COMMAND_TIMEOUT)
        if done.exit_status == 0:
            return done.stdout.strip() == port
        raise RouterError(
            f"caddy: cannot listen on {listen} on host {self.host.name}: "
            f"{(done.stderr or done.stdout).strip() or f'exit status {done.exit_status}'}",
            hint=f"use an address of host {self.host.name}, e.g. {self.host.address}:8080",
        )

    async def fresh_access_log(self, environment: str) -> Path:
        """The local copy of the host's access log, with the lines appended since."""
        await self._on_host(self.layout.caddy_dir)
        local = self.access_log(environment)
        mark_file = self.state_dir / f"copied-{environment}.json"
        try:
            mark = json.loads(mark_file.read_text(encoding="utf-8"))
            inode, offset = int(mark["inode"]), int(mark["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            inode, offset = 0, 0
        argv = ["python3", "-S", "-c", _READ_NEW, self.caddy_access_log(environment)]
        output = await self._run([*argv, str(inode), str(offset)], "read the access log")
        header, _, lines = output.partition("\n")
        try:
            found = json.loads(header)
            new_mark = {"inode": int(found["inode"]), "offset": int(found["offset"])}
        except (ValueError, KeyError, TypeError):
            raise RouterError(
                f"caddy: host {self.host.name}: unexpected answer reading the access log: "
                f"{header[:200]!r}"
            ) from None
        await asyncio.to_thread(_append, local, lines.encode())
        atomic_write_text(mark_file, json.dumps(new_mark) + "\n")
        return local

    async def forget_access_logs(self, environment: str) -> None:
        await self._on_host(self.layout.caddy_dir)
        log = self.caddy_access_log(environment)
        stem = log.removesuffix(".log")
        await self._run(
            ["sh", "-c", 'rm -f -- "$1" "$2"-????-??-??T??-??-??.???.log', "sh", log, stem],
            "remove the access logs",
        )
        await super().forget_access_logs(environment)
        (self.state_dir / f"copied-{environment}.json").unlink(missing_ok=True)


def _append(local: Path, data: bytes) -> None:
    """Append to the local copy; a copy grown past Caddy's roll size is rolled as Caddy
    rolls its log (renamed with the time), so that counting follows it the same way."""
    local.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if local.stat().st_size > ACCESS_LOG_ROLL_MB * 1024 * 1024:
            local.rename(_rolled_name(local))
            for old in sorted(rolled_logs(local))[:-ACCESS_LOG_ROLL_KEEP]:
                old.unlink(missing_ok=True)
    if data:
        with local.open("ab") as handle:
            handle.write(data)


def _rolled_name(log: Path) -> Path:
    """A rolled copy's name as Caddy gives it (the UTC time, in ms), not taken yet."""
    at = datetime.now(UTC)
    while True:
        stamp = at.strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        rolled = log.with_name(f"{log.stem}-{stamp}{log.suffix}")
        if not rolled.exists():
            return rolled
        at += timedelta(milliseconds=1)


def _remove_stale_sockets(run_dir: Path) -> None:
    """Forwarded admin sockets of processes that are gone (killed before removing theirs)."""
    for path in run_dir.glob("caddy-*-*.sock"):
        match = _SOCKET.fullmatch(path.name)
        if match is None or int(match["pid"]) == os.getpid():
            continue
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:
            continue
