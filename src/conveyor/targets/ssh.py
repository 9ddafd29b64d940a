"""`SshTarget`: instances run on an environment's hosts, under one supervisord per project
on each host, driven over SSH (`conveyor.ssh.connection`).

Where things live on a host is `conveyor.ssh.layout.RemoteLayout`. An instance is a
supervisord program whose file (`supervisor/programs/<name>.conf`, mode 0600: the
environment holds secrets) is written over SSH's stdin and loaded with
`supervisorctl update <name>`. The paths an `InstanceSpec` carries are the
deployer's (its release and data directories); the target translates them to
the host's layout. Instances listen on the host's address, which the router on
the deployer reaches. Every error names the host.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ipaddress
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from conveyor.concurrently import every
from conveyor.config.hosts import carries
from conveyor.config.models.environments import DEFAULT_PARALLEL
from conveyor.errors import HostUnreachableError, TargetError
from conveyor.paths import Paths
from conveyor.redaction import redact_registered
from conveyor.releases import depstore
from conveyor.runas import RunUser
from conveyor.ssh.connection import COMMAND_TIMEOUT, Completed, Connections
from conveyor.ssh.hosts import HostSpec
from conveyor.ssh.inventory import environment_hosts, run_host
from conveyor.ssh.layout import RemoteLayout
from conveyor.ssh.setup import ensure_host
from conveyor.targets import (
    ssh_archive,
    ssh_programs,
    ssh_ship,
    ssh_status,
    ssh_stop,
    ssh_strays,
)
from conveyor.targets.base import (
    UNKNOWN,
    CommandResult,
    Endpoint,
    InstanceSpec,
    InstanceStatus,
    is_instance,
)
from conveyor.targets.host_gate import HostGate
from conveyor.targets.supervisor import _redact, check_program_name

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.targets.base import Target

__all__ = ["SshTarget", "build", "ensure_supervisord"]

SHIP_TIMEOUT = 1800.0  # seconds a release may take to cross the wire to one host


def build(rt: Runtime, environment: str) -> SshTarget:
    """The `ssh` plugin (`conveyor.plugins`): the environment's hosts from its config."""
    config, root = rt.loaded.config, rt.loaded.root
    hosts = environment_hosts(config, environment, root)
    connections = Connections(rt.paths.known_hosts)
    run_hosts = {s: run_host(config, environment, s, root).name for s in config.services}
    return SshTarget(
        connections,
        hosts,
        RemoteLayout(config.project),
        rt.paths,
        parallel=rt.environment(environment).parallel,
        run_hosts=run_hosts,
    )


async def ensure_running(rt: Runtime, environments: Sequence[str]) -> None:
    """The `ssh` plugin's `ensure`: the project's supervisord runs on every host of these
    environments (a rebooted host gets it back)."""
    for environment in environments:
        target = rt.target_for(environment)
        assert isinstance(target, SshTarget)
        await target.ensure_supervisord()
        recorded = {i.name for i in rt.store.list_instances()}
        for name, host in await ssh_strays.stop_strays(target, recorded):
            rt.notes.append(
                f"stopped {name} on {host}: no deployment records it (left "
                "running while its host was unreachable)"
            )


async def ensure_supervisord(
    connections: Connections, host: HostSpec, layout: RemoteLayout
) -> None:
    """The project's supervisord runs on the host, set up as `conveyor setup` does it
    (`conveyor.ssh.setup.ensure_host`): idempotent, as the login user, no root."""
    await ensure_host(connections, host, layout)


async def _home(connections: Connections, host: HostSpec) -> PurePosixPath:
    done = await connections.check(host, ["pwd"], "find the login directory")
    return PurePosixPath(done.stdout.strip())


async def _write(connections: Connections, host: HostSpec, path: PurePosixPath, text: str) -> None:
    """Write a file of mode 0600 on the host from stdin (atomic: a temporary, then mv)."""
    script = 'umask 077 && cat > "$1.tmp" && mv -f "$1.tmp" "$1"'
    await connections.check(
        host, ["sh", "-c", script, "sh", str(path)], f"write {path}", input=text
    )


class SshTarget:
    """The `Target` of an environment's hosts, reached over SSH."""

    name = "ssh"
    ships_releases = True

    def __init__(
        self,
        connections: Connections,
        hosts: Sequence[HostSpec],
        layout: RemoteLayout,
        paths: Paths,
        *,
        parallel: int = DEFAULT_PARALLEL,
        run_hosts: Mapping[str, str] | None = None,
    ) -> None:
        self.connections = connections
        self._hosts = {h.name: h for h in hosts}
        self.layout = layout
        self.paths = paths
        self._homes: dict[str, PurePosixPath] = {}
        self.gate = HostGate(parallel)  # hosts shipped to, started or stopped on at once
        self._where: dict[str, str] = {}  # instance name -> host name, as seen by list()
        self._run_hosts = dict(run_hosts or {})  # service -> where its commands run
        self._supervisord_ensured = False
        self._archives = ssh_archive.SharedArchives()  # releases that hosts get whole
        self._status_queries: ssh_status.SharedQueries[dict[str, InstanceStatus]] = (
            ssh_status.SharedQueries()
        )

    # -- hosts ----------------------------------------------------------------

    def hosts(self, roles: Sequence[str] = ()) -> tuple[str, ...]:
        """The hosts that carry `roles`, less those found unreachable during this run."""
        return tuple(
            n
            for n, h in self._hosts.items()
            if (not roles or carries(h.roles, roles)) and n not in self.connections.lost
        )

    def where(self, name: str) -> str:
        """The host an instance was last seen on ("a host" when not seen)."""
        return self._where.get(name, "a host")

    def _reachable(self) -> builtins.list[HostSpec]:
        return [h for n, h in self._hosts.items() if n not in self.connections.lost]

    async def ensure_supervisord(self) -> None:
        """`ensure_supervisord` on every host, at the same time; once per command (a deploy
        asks before planning and again before running)."""
        if self._supervisord_ensured:
            return
        await every(
            *(ensure_supervisord(self.connections, h, self.layout) for h in self._hosts.values())
        )
        self._supervisord_ensured = True

    def host(self, name: str) -> HostSpec:
        try:
            return self._hosts[name]
        except KeyError:
            raise TargetError(
                f'host "{name}" is not one of this environment\'s hosts '
                f"({', '.join(self._hosts) or 'none'})",
                hint="instances recorded on a host removed from conveyor.yml: put it back "
                "to stop them, or `conveyor down` before removing it",
            ) from None

    async def home(self, host: HostSpec) -> PurePosixPath:
        """The absolute path of the project's directory on the host."""
        if host.name not in self._homes:
            self._homes[host.name] = await _home(self.connections, host)
        return self._homes[host.name]

    def listen_address(self, host: HostSpec) -> str:
        """The interface instances on `host` bind and the router reaches: its IP address."""
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(host.address))
        try:
            return str(socket.getaddrinfo(host.address, None, type=socket.SOCK_STREAM)[0][4][0])
        except OSError as exc:
            raise TargetError(
                f"host {host.describe()}: cannot resolve its address: {exc}",
                hint="give the host's IP address in conveyor.yml",
            ) from None

    async def reserve(self, host: str, taken: set[int], ports: range) -> Endpoint:
        spec = self.host(host)
        listen = self.listen_address(spec)
        free = [p for p in ports if p not in taken]
        start = secrets.randbelow(len(free)) if free else 0
        candidates = (free[start:] + free[:start])[:200]
        while candidates:
            done = await self.connections.check(
                spec,
                ssh_programs.free_port_argv(listen, candidates),
                "look for a free port",
            )
            if done.stdout.strip():
                return Endpoint(host, listen, int(done.stdout.strip()))
            free = [p for p in free if p not in candidates]
            candidates = free[:200]
        raise TargetError(
            f"host {spec.describe()}: no free TCP port on {listen} in "
            f"{ports.start}-{ports.stop - 1}",
            hint="widen `ports` in conveyor.yml (or stop what holds them on the host)",
        )

    # -- paths ------------------------------------------------------------------

    def remote_path(self, home: PurePosixPath, local: str | Path) -> PurePosixPath | None:
        """The host's path of a release or data path of the deployer (None: neither)."""
        local = Path(local)
        for mine, theirs in (
            (self.paths.releases, self.layout.releases),
            (self.paths.data, self.layout.home / "data"),
        ):
            if local == mine or mine in local.parents:
                return home / theirs / PurePosixPath(local.relative_to(mine).as_posix())
        return None

    def remote_env(self, home: PurePosixPath, env: dict[str, str]) -> dict[str, str]:
        """`env` with the deployer's release and data paths made the host's."""
        return {key: self._remote_value(home, value) for key, value in env.items()}

    def remote_argv(self, home: PurePosixPath, argv: Sequence[str]) -> list[str]:
        """`argv` with its arguments that are the deployer's release and data paths (a list
        `run:` with `$DATA_DIR` filled in) made the host's."""
        return [self._remote_value(home, arg) for arg in argv]

    def _remote_value(self, home: PurePosixPath, value: str) -> str:
        remote = self.remote_path(home, value) if value.startswith("/") else None
        return str(remote) if remote is not None else value

    def log_path(self, home: PurePosixPath, name: str) -> PurePosixPath:
        check_program_name(name)
        return home / self.layout.instance_logs / f"{name}.log"

    # -- shipping ----------------------------------------------------------------

    async def ship(self, host: str, release_dir: Path, digest: str) -> None:
        """Put the sealed release on the host once, check its digest there, seal it there."""
        spec = self.host(host)
        async with self.gate.acting_on(host):
            home = await self.home(spec)
            final = self.remote_path(home, release_dir)
            if final is None:
                raise TargetError(f"release {release_dir} is not under {self.paths.releases}")
            found = await self._verify(spec, final, final, digest)
            if found.state == "ok":
                return  # shipped before and intact: not sent again
            staging = ssh_ship.staging_dir(final)
            by_rsync = found.rsync and spec.jump is None and found.previous is not None
            follow = depstore.followed(release_dir) if by_rsync else []
            parents = [str(PurePosixPath(p).parent) for p in follow]
            clean = ssh_ship.clean_argv(staging, parents)
            await self.connections.check(spec, clean, "prepare")
            if by_rsync:
                await self._rsync(spec, release_dir, staging, found.previous, follow)
            else:
                await self._tarball(spec, release_dir, staging)
            checked = await self._verify(spec, staging, final, digest)
            if checked.state != "ok":
                shown = "\n".join(f"    {c}" for c in checked.changes[:10])
                more = len(checked.changes) - 10
                if more > 0:
                    shown += f"\n    ... and {more} more"
                raise TargetError(
                    f"host {spec.describe()}: release {release_dir.name} of "
                    f"{release_dir.parent.name} arrived different from what was built "
                    f"(removed there):\n{shown}",
                    hint="deploy again; if it happens again, check the host's disk",
                )

    async def _verify(
        self, host: HostSpec, staging: PurePosixPath, final: PurePosixPath, digest: str
    ) -> ssh_ship.Verified:
        done = await self.connections.check(
            host,
            ssh_ship.verify_argv(staging, final, digest),
            f"check release {final.name}",
            input=ssh_ship.VERIFY,
            timeout=SHIP_TIMEOUT,
        )
        return ssh_ship.parse_verified(done.stdout)

    async def _rsync(
        self,
        host: HostSpec,
        local: Path,
        staging: PurePosixPath,
        previous: str | None,
        follow: builtins.list[str],
    ) -> None:
        """The release's dependencies in the store first (the directories their symlinks
        name, before the release's own top directory is made read-only), then the rest."""
        known = self.connections.known_hosts_file
        for path in follow:
            earlier = f"{previous}/{path}" if previous else None
            argv = ssh_ship.rsync_argv(host, known, local / path, staging / path, earlier)
            await self._rsync_tree(host, local.name, argv)
        argv = ssh_ship.rsync_argv(host, known, local, staging, previous, follow)
        await self._rsync_tree(host, local.name, argv)

    async def _rsync_tree(self, host: HostSpec, name: str, argv: list[str]) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), SHIP_TIMEOUT)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            # A host gone away mid-copy is a HostUnreachableError, as anywhere else.
            await self.connections.run(host, ["true"], timeout=COMMAND_TIMEOUT)
            raise TargetError(
                f"host {host.describe()}: cannot send release {name}: rsync: "
                f"{err.decode(errors='replace').strip()[-500:]}",
                hint="check the host's disk space and that `conveyor hosts ENV` passes",
            )

    async def _tarball(self, host: HostSpec, local: Path, staging: PurePosixPath) -> None:
        archive = await self._archives.get(local)  # packed once for every host
        remote = staging.parent / f"{staging.name}.tar.gz"
        await self.connections.put(host, archive, str(remote))
        await self.connections.check(
            host, ssh_ship.untar_argv(remote, staging), "unpack the release"
        )

    # -- programs ------------------------------------------------------------------

    async def _ctl(self, host: HostSpec, *args: str) -> Completed:
        """`supervisorctl ARGS` on the host. A supervisord that is gone (killed, the host
        rebooted) is started again as `conveyor setup` does it, then asked once more."""
        argv = self.layout.supervisorctl(*args)
        done = await self.connections.run(host, argv, timeout=COMMAND_TIMEOUT)
        if ssh_programs.supervisord_gone(done.stdout + done.stderr):
            try:
                await ensure_supervisord(self.connections, host, self.layout)
            except HostUnreachableError:
                raise
            except TargetError as error:
                raise TargetError(
                    f"host {host.describe()}: supervisord is not running and could not be "
                    f"started again: {error.message}",
                    hint=(f"{error.hint}; then " if error.hint else "")
                    + "run `conveyor setup ENV` (it says what is missing), then deploy again",
                ) from None
            done = await self.connections.run(host, argv, timeout=COMMAND_TIMEOUT)
        return done

    async def start(self, spec: InstanceSpec) -> None:
        """Write the program file on the host and have supervisord load it (no-op when the
        same program runs; a stopped one is started again; a changed one is replaced)."""
        async with self.gate.acting_on(self.host(spec.host).name):
            await self._start(spec)

    async def _start(self, spec: InstanceSpec) -> None:
        host = self.host(spec.host)
        check_program_name(spec.name)
        home = await self.home(host)
        release = self.remote_path(home, spec.release_dir)
        if release is None:
            raise TargetError(
                f"host {host.describe()}: instance {spec.name}: release directory "
                f"{spec.release_dir} is not a release of this project"
            )
        env = self.remote_env(home, spec.env)
        programs = home / self.layout.programs_dir
        program = ssh_programs.render_program(
            spec.name,
            self.remote_argv(home, spec.command),
            release,
            env,
            self.log_path(home, spec.name),
            spec.stop_timeout,
            programs / f"{spec.name}.launch.json",
            spec.owner,
            spec.stop_signal,
            spec.stop_as_group,
        )
        data = env.get("DATA_DIR", "")
        current = await self.connections.run(
            host,
            [
                "sh",
                "-c",
                '[ -z "$3" ] || { umask 077; mkdir -p "$3"; }; '
                'test -d "$1" || { echo "missing"; exit 0; }; cat "$2" 2>/dev/null',
                "sh",
                str(release),
                str(programs / f"{spec.name}.conf"),
                data,
            ],
            timeout=COMMAND_TIMEOUT,
        )
        if current.stdout == "missing\n":
            raise TargetError(
                f"host {host.describe()}: instance {spec.name}: release {spec.release_id} "
                f"of {spec.service} is not on the host",
                hint="ship it first (a deploy does) or deploy again",
            )
        await self._load(host, spec.name, program, current.stdout, env)

    async def run_program(
        self,
        host: HostSpec,
        name: str,
        argv: Sequence[str],
        cwd: PurePosixPath,
        env: dict[str, str],
        *,
        stop_timeout: float,
        owner: str,
    ) -> None:
        """Have the host's supervisord run a program of Conveyor's own (the router on its
        host, `name` outside the instances' names): loaded, or replaced when it changed."""
        check_program_name(name)
        home = await self.home(host)
        programs = home / self.layout.programs_dir
        program = ssh_programs.render_program(
            name,
            argv,
            cwd,
            env,
            self.log_path(home, name),
            stop_timeout,
            programs / f"{name}.launch.json",
            owner,
        )
        current = await self.connections.run(
            host, ["cat", str(programs / f"{name}.conf")], timeout=COMMAND_TIMEOUT
        )
        await self._load(
            host, name, program, current.stdout if current.exit_status == 0 else "", env
        )

    async def _load(
        self,
        host: HostSpec,
        name: str,
        program: ssh_programs.Program,
        current: str,
        env: Mapping[str, str],
    ) -> None:
        """Have supervisord run `program` (its file is `current` on the host now): started
        again when the same one is stopped, written and updated when it differs."""
        programs = await self.home(host) / self.layout.programs_dir
        conf = programs / f"{name}.conf"
        if current == program.conf:
            status = await self.status(name, host=host)
            if status.state in ("stopped", "exited", "fatal"):
                await self._ctl(host, "start", name)
            self._where[name] = host.name
            return
        if program.launch is not None:
            await _write(self.connections, host, programs / f"{name}.launch.json", program.launch)
        await _write(self.connections, host, conf, program.conf)
        done = await self._ctl(host, "update", name)
        if done.exit_status != 0 or "ERROR" in done.stdout:
            await self.connections.run(host, ["rm", "-f", str(conf)], timeout=COMMAND_TIMEOUT)
            raise TargetError(
                f"host {host.describe()}: supervisord did not take {name}: "
                f"{_redact((done.stdout + done.stderr).strip(), env)}",
                hint=f"is it running? `conveyor setup ENV` starts it; see "
                f"{self.layout.supervisor_dir}/supervisord.log on the host",
            )
        self._where[name] = host.name

    async def stop(self, name: str, timeout: float) -> None:
        """Stop the program (supervisord: SIGTERM to its group, SIGKILL after its stop
        timeout), wait until its processes are gone, remove its file. No-op when absent."""
        check_program_name(name)
        for host in await self._hosts_of(name):
            async with self.gate.acting_on(host.name):
                await self._stop_on(host, name, timeout)

    async def _stop_on(self, host: HostSpec, name: str, timeout: float) -> None:
        home = await self.home(host)
        programs = home / self.layout.programs_dir
        before = (await self._statuses(host)).get(name)
        await self.connections.run(
            host,
            ssh_stop.stop_argv(
                name,
                before.pid if before is not None else None,
                timeout,
                programs / f"{name}.conf",
                programs / f"{name}.launch.json",
                self.layout.supervisorctl(),
            ),
            timeout=2 * timeout + COMMAND_TIMEOUT,
        )
        self._where.pop(name, None)

    async def _hosts_of(self, name: str) -> builtins.list[HostSpec]:
        """The hosts that have the program (usually one), asking each when not known."""
        known = self._where.get(name)
        if known is not None and known in self._hosts:
            # An unreachable host's programs are left as they are (its traffic is taken
            # away): `conveyor down`/a deploy stops them once it is back.
            return [] if known in self.connections.lost else [self._hosts[known]]
        hosts = self._reachable()
        found = await every(*(self._has(h, name) for h in hosts))
        return [h for h, has in zip(hosts, found, strict=True) if has]

    async def _has(self, host: HostSpec, name: str) -> bool:
        """Whether the host has the program: supervisord runs it or its file is there (the
        status query lists both)."""
        return name in await self._statuses(host)

    async def _statuses(self, host: HostSpec) -> dict[str, InstanceStatus]:
        """The host's programs (one query at a time per host, shared: `ssh_status`)."""
        return dict(await self._status_queries.get(host.name, lambda: self._query(host)))

    async def _query(self, host: HostSpec) -> dict[str, InstanceStatus]:
        home = await self.home(host)
        done = await self.connections.run(
            host,
            ssh_status.status_argv(
                home / self.layout.programs_dir, home / self.layout.supervisor_socket
            ),
            timeout=COMMAND_TIMEOUT,
        )
        files, _, status = done.stdout.partition("--- status\n")
        found = ssh_programs.parse_status(status, time.time())
        for line in files.splitlines():
            if line.endswith(".conf") and line[: -len(".conf")] not in found:
                found[line[: -len(".conf")]] = ssh_programs.configured_only(line[: -len(".conf")])
        for name in found:
            self._where.setdefault(name, host.name)
        return found

    async def status(self, name: str, *, host: HostSpec | None = None) -> InstanceStatus:
        check_program_name(name)
        hosts = [host] if host is not None else await self._hosts_of(name)
        for candidate in hosts:
            found = (await self._statuses(candidate)).get(name)
            if found is not None:
                return found
        return InstanceStatus(name=name, state=UNKNOWN)

    async def statuses_on(self, host: str) -> dict[str, InstanceStatus]:
        """Every program of the project on `host`, by name (`status` asks host by host)."""
        return await self._statuses(self.host(host))

    async def list(self) -> builtins.list[InstanceStatus]:
        """Every instance on every host (not the accessories nor the router), sorted by name."""
        per_host = await every(*(self._statuses(h) for h in self._reachable()))
        merged: dict[str, InstanceStatus] = {}
        for found in per_host:
            merged.update({n: s for n, s in found.items() if is_instance(n)})
        return [merged[n] for n in sorted(merged)]

    async def logs(self, name: str, lines: int, *, host: str | None = None) -> builtins.list[str]:
        """The last `lines` lines of the instance's output (its log and the newest rotation),
        read on `host` when given (the store knows it), else on the hosts that have it."""
        check_program_name(name)
        hosts = [self.host(host)] if host is not None else await self._hosts_of(name)
        hosts = hosts or builtins.list(self._hosts.values())
        for spec in hosts:
            log = self.log_path(await self.home(spec), name)
            done = await self.connections.run(
                spec,
                [
                    "sh",
                    "-c",
                    'cat "$1.1" "$1" 2>/dev/null | tail -n "$2"',
                    "sh",
                    str(log),
                    str(max(0, lines)),
                ],
                timeout=COMMAND_TIMEOUT,
            )
            if done.stdout:
                return done.stdout.splitlines()[-lines:] if lines > 0 else []
        return []

    async def follow(self, name: str, lines: int, *, host: str | None = None) -> AsyncIterator[str]:
        """The last `lines` lines, then every new line (`tail -F` on the host)."""
        check_program_name(name)
        hosts = [self.host(host)] if host is not None else await self._hosts_of(name)
        hosts = hosts or builtins.list(self._hosts.values())
        log = self.log_path(await self.home(hosts[0]), name)
        connection = await self.connections.connection(hosts[0])
        import shlex

        process = await connection.create_process(
            shlex.join(["tail", "-n", str(max(0, lines)), "-F", str(log)]),
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async for line in process.stdout:
                yield str(line).rstrip("\n").removesuffix("\r")
        finally:
            process.close()

    # -- one-off commands --------------------------------------------------------

    def command_host(self, cwd: Path) -> HostSpec:
        """Where a one-off command in `cwd` runs (`conveyor run` says so)."""
        return self._command_host(cwd)

    def _command_host(self, cwd: Path) -> HostSpec:
        """Where a command in `cwd` runs: the run host of the service whose release `cwd`
        is in (`run_host:`), else the first host."""
        if not self._hosts:
            raise TargetError("the environment has no hosts", hint="add hosts: in conveyor.yml")
        with contextlib.suppress(ValueError, IndexError):
            service = cwd.relative_to(self.paths.releases).parts[0]
            if self._run_hosts.get(service) in self._hosts:
                return self._hosts[self._run_hosts[service]]
        return next(iter(self._hosts.values()))

    async def run_command(
        self,
        command: builtins.list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        log_path: Path | None = None,
        user: RunUser | None = None,
        *,
        host: str | None = None,
    ) -> CommandResult:
        """Run a one-off command on its service's run host (on `host` when given: an
        instance's command checks), in the release directory there, with `env` fed on
        stdin (never on a command line); stdout and stderr merged; on timeout its process
        group gets SIGKILL and `timed_out` is set."""
        if not command:
            raise TargetError("one-off command is empty", hint="give an argv list")
        spec = self.host(host) if host is not None else self._command_host(cwd)
        return await self._run_on(spec, command, cwd, env, timeout, log_path)

    async def _run_on(
        self,
        host: HostSpec,
        command: builtins.list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        log_path: Path | None,
    ) -> CommandResult:
        home = await self.home(host)
        where = self.remote_path(home, cwd) or PurePosixPath(str(cwd))
        started = time.monotonic()
        done = await self.connections.run(
            host,
            ssh_programs.command_argv(command, where, home, timeout),
            input=ssh_programs.env_script(self.remote_env(home, env)),
            timeout=timeout + COMMAND_TIMEOUT,
        )
        duration = time.monotonic() - started
        output = done.stdout + done.stderr
        if log_path is not None:
            with log_path.open("a", encoding="utf-8") as log:
                log.write(redact_registered(output))
        timed_out = done.exit_status in (124, 137) and duration >= timeout
        return CommandResult(
            exit_code=done.exit_status,
            output=output,
            duration=duration,
            timed_out=timed_out,
            extra={"host": host.name},
        )

    async def run_attached(
        self,
        command: builtins.list[str],
        cwd: Path,
        env: dict[str, str],
        user: RunUser | None = None,
    ) -> int:
        """Run a one-off command on its service's run host attached to this process's terminal
        (a pty when stdin is one), `ssh -t` style; its exit status comes back."""
        if not command:
            raise TargetError("one-off command is empty", hint="give an argv list")
        host = self._command_host(cwd)
        home = await self.home(host)
        where = self.remote_path(home, cwd) or PurePosixPath(str(cwd))
        import shlex

        env_file = home / self.layout.run_dir / f"env-{secrets.token_hex(8)}"
        await _write(
            self.connections, host, env_file, ssh_programs.env_script(self.remote_env(home, env))
        )
        script = (
            'f=$1; shift; set -a; . "$f"; set +a; rm -f "$f"; cd "$1" || exit 127; shift; exec "$@"'
        )
        argv = ["sh", "-c", script, "sh", str(env_file), str(where), *command]
        connection = await self.connections.connection(host)
        terminal = sys.stdin.isatty()
        options: dict[str, Any] = {}
        if terminal:
            size = os.get_terminal_size()
            options = {
                "term_type": os.environ.get("TERM", "xterm"),
                "term_size": (size.columns, size.lines),
            }
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            # Copies of the descriptors: asyncssh closes what it was given when done.
            result = await connection.run(
                shlex.join(argv),
                stdin=_stream(0),
                stdout=_stream(1),
                stderr=_stream(2),
                check=False,
                **options,
            )
        finally:
            await self.connections.run(host, ["rm", "-f", str(env_file)], timeout=COMMAND_TIMEOUT)
        if result.exit_signal:
            return 128 + _signal_number(result.exit_signal[0])
        return result.exit_status if result.exit_status is not None else 255


def _stream(fd: int) -> int:
    """A copy of descriptor `fd` for asyncssh (it closes what it was given), or DEVNULL when
    `fd` is a device other than a terminal (/dev/null: the event loop cannot poll it)."""
    import stat

    mode = os.fstat(fd).st_mode
    if stat.S_ISCHR(mode) and not os.isatty(fd):
        return asyncio.subprocess.DEVNULL
    return os.dup(fd)


def _signal_number(name: str) -> int:
    import signal

    with contextlib.suppress(AttributeError):
        return int(getattr(signal, f"SIG{name}"))
    return 1


if TYPE_CHECKING:

    def _implements_target(target: SshTarget) -> Target:
        return target  # mypy checks that SshTarget satisfies the protocol
