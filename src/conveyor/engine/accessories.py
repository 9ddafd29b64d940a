"""Accessories of an environment: started, stopped and observed as supervisord programs of
the environment's target (the same supervisord and program files as its instances).

An accessory is the program `accessory.<environment>.<name>` on its host; it runs in its
data directory `<data>/<environment>/<name>` (0700, kept across deploys and releases) and
listens on a port chosen once and recorded in the state store (`AccessoryRecord`). A
start is idempotent: a running accessory is never restarted by it, only told apart
when its config changed since it started (`accessory restart` applies that).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.config.accessories import AccessoryAddress, fill, references
from conveyor.config.models.accessories import fill_url
from conveyor.environ import expand_env, instance_argv, minimal_environment
from conveyor.errors import ConfigError, HealthCheckError, TargetError, UsageError
from conveyor.printable import printable
from conveyor.redaction import env_secrets, redact_registered, redact_text
from conveyor.runas import own_data_dir, run_user, search_path_for
from conveyor.store.records import AccessoryRecord
from conveyor.targets.base import (
    ACCESSORY_OWNER,
    BACKOFF,
    EXITED,
    FATAL,
    LOCAL_HOST,
    RUNNING,
    STARTING,
    STOPPED,
    UNKNOWN,
    Endpoint,
    InstanceSpec,
    InstanceStatus,
    accessory_program,
    split_address,
)

if TYPE_CHECKING:
    from conveyor.config.models import AccessoryConfig
    from conveyor.engine.runtime import Runtime
    from conveyor.targets.ssh import SshTarget

Progress = Callable[[str], None]

LOG_LINES_ON_FAILURE = 20
CRASH_LOOP_RESTARTS = 2  # exits while starting that mean it will not come up

# What `start` found or did.
STARTED = "started"
ALREADY_RUNNING = "running"
DIFFERS = "differs"  # running, with a config other than conveyor.yml's now


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class StartResult:
    name: str
    outcome: str  # STARTED, ALREADY_RUNNING or DIFFERS
    record: AccessoryRecord
    pid: int | None

    def describe(self, environment: str) -> str:
        where = "" if self.record.host == LOCAL_HOST else f" on {self.record.host}"
        at = f"{where} at {self.record.address}"
        if self.outcome == STARTED:
            return f"started accessory {self.name}{at} (pid {self.pid})"
        if self.outcome == ALREADY_RUNNING:
            return f"accessory {self.name} already runs{at} (pid {self.pid})"
        return (
            f"accessory {self.name} runs{at} (pid {self.pid}) with a config other than "
            f"conveyor.yml's: `conveyor accessory restart {environment} {self.name}` applies it"
        )


def data_dir(rt: Runtime, environment: str, name: str) -> Path:
    """Where the accessory keeps its data: `<data>/<environment>/<name>` (on its host)."""
    return rt.paths.data / environment / name


def configured(rt: Runtime, environment: str, name: str) -> AccessoryConfig:
    """The accessory `name` as `environment` runs it; `UsageError` naming the key when it
    has none."""
    config = rt.loaded.config
    rt.environment(environment)
    accessories = config.accessories_for(environment)
    if name in accessories:
        return accessories[name]
    if name in config.accessories:
        raise UsageError(
            f'environment "{environment}" has no accessory "{name}" '
            f"(environments/{environment}/accessories/{name} is false)",
            hint=f"remove that line from {rt.loaded.path} to run it there",
        )
    known = ", ".join(sorted(accessories)) or "none defined"
    raise UsageError(
        f'unknown accessory "{name}" (accessories/{name} is not in {rt.loaded.path}; '
        f"accessories of {environment}: {known})",
        hint="accessories are declared under accessories: in conveyor.yml",
    )


def names(rt: Runtime, environment: str) -> list[str]:
    """The accessories of `environment`, in file order."""
    rt.environment(environment)
    return list(rt.loaded.config.accessories_for(environment))


def host_of(rt: Runtime, environment: str, name: str, accessory: AccessoryConfig) -> str:
    """Where it runs: this machine on the local target; else its `host:`, else where it
    ran before, else the environment's first host."""
    target = rt.target_for(environment)
    if not target.ships_releases:
        return LOCAL_HOST
    if accessory.host is not None:
        return accessory.host
    record = rt.store.get_accessory(environment, name)
    if record is not None and record.host in target.hosts():
        return record.host
    hosts = target.hosts()
    if not hosts:
        raise TargetError(f"environment {environment} has no reachable host for accessory {name}")
    return hosts[0]


async def _reserve(
    rt: Runtime, environment: str, name: str, accessory: AccessoryConfig, host: str
) -> Endpoint:
    """Its endpoint: the recorded one while host and port stay; else `port:` (free on the
    host, or an error naming who holds it), else a free port of the environment's range
    that no instance or other accessory of that host has."""
    target = rt.target_for(environment)
    record = rt.store.get_accessory(environment, name)
    taken = {i.port for i in rt.store.list_instances() if i.host == host}
    taken |= {
        a.port
        for a in rt.store.list_accessories()
        if a.host == host and (a.environment, a.name) != (environment, name)
    }
    if accessory.port is not None:
        if accessory.port in taken:
            raise TargetError(
                f"accessory {name} of {environment}: port {accessory.port} on {host} is "
                "recorded for another instance or accessory",
                hint=f"set another port: for accessories/{name} in conveyor.yml",
            )
        try:
            return await target.reserve(host, set(), range(accessory.port, accessory.port + 1))
        except TargetError:
            raise _port_in_use(environment, name, host, accessory.port) from None
    if record is not None and record.host == host and record.port not in taken:
        ports = range(record.port, record.port + 1)  # the one it had: kept when free
        try:
            return await target.reserve(host, taken, ports)
        except TargetError:
            pass
    return await target.reserve(host, taken, rt.loaded.config.ports_for(environment))


def _port_in_use(environment: str, name: str, host: str, port: int) -> TargetError:
    """The error of a `port:` that something else listens on, naming it when it is here."""
    holder = ""
    if host == LOCAL_HOST:
        from conveyor.engine.serving import gather

        found = gather([{"listen": f"127.0.0.1:{port}", "services": []}]).get(port, [])
        holder = ", ".join(str(h) for h in found) or "a process of another user"
    where = "this machine" if host == LOCAL_HOST else host
    held = f" by {holder}" if holder else ""
    return TargetError(
        f"accessory {name} of {environment}: port {port} on {where} is in use{held}",
        hint=f"stop that process, or set another port: for accessories/{name} "
        f"(or environments/{environment}/accessories/{name}/port)",
    )


def _require_set(rt: Runtime, environment: str, name: str) -> None:
    from conveyor.config.loader import UNSET_HINT

    issues = rt.loaded.unset_issues(
        f"accessories/{name}/", f"environments/{environment}/accessories/{name}/"
    )
    if issues:
        raise ConfigError(issues, source=str(rt.loaded.path), hint=UNSET_HINT)


def spec_for(
    rt: Runtime, environment: str, name: str, accessory: AccessoryConfig, endpoint: Endpoint
) -> InstanceSpec:
    """The target's view of the accessory: its command line and environment (resolved now,
    with the environment's secrets), in its data directory."""
    _require_set(rt, environment, name)
    directory = data_dir(rt, environment, name)
    user = run_user(None)  # as the services' default user when Conveyor runs as root
    own_data_dir(directory, user)
    account: dict[str, str] = {}
    if user is not None:
        path = accessory.env.get("PATH") or minimal_environment()["PATH"]
        account = {**user.environment(directory), "PATH": search_path_for(path, user)}
    env = expand_env(
        {
            **account,
            **accessory.env,
            "PORT": str(endpoint.port),
            "HOST": endpoint.listen,
            "DATA_DIR": str(directory),
            "CONVEYOR_ENV": environment,
            "CONVEYOR_ACCESSORY": name,
        }
    )
    env = {**env, **rt.secrets(environment)}
    program = accessory_program(environment, name)
    return InstanceSpec(
        name=program,
        environment=environment,
        service=name,
        release_id="",
        release_dir=directory,
        command=instance_argv(accessory.run, env),
        env=env,
        port=endpoint.port,
        stop_timeout=accessory.stop_timeout,
        log_path=rt.paths.instance_logs / f"{program}.log",
        user=user,
        host=endpoint.host,
        owner=ACCESSORY_OWNER,
    )


def config_digest(spec: InstanceSpec) -> str:
    """What a start is made of, as a digest: command, environment (secrets masked: only a
    mask is hashed), directory, host and port."""
    text = json.dumps(
        [spec.command, spec.env, str(spec.release_dir), spec.host, spec.port], sort_keys=True
    )
    return hashlib.sha256(redact_registered(text).encode()).hexdigest()


async def _ensure_target(rt: Runtime, environment: str) -> None:
    from conveyor.plugins import TARGETS

    await TARGETS[rt.environment(environment).target].ensure_running(rt, [environment])


def _remote(rt: Runtime, environment: str, name: str) -> tuple[SshTarget, str] | None:
    """The SSH target and the host the accessory was started on, when it runs on one (its
    commands then go to that host only)."""
    from conveyor.targets.ssh import SshTarget

    target = rt.target_for(environment)
    record = rt.store.get_accessory(environment, name)
    if record is None or record.host == LOCAL_HOST or not isinstance(target, SshTarget):
        return None
    return target, record.host


async def status(rt: Runtime, environment: str, name: str) -> InstanceStatus:
    """The state of its program (UNKNOWN: not on its host)."""
    program = accessory_program(environment, name)
    remote = _remote(rt, environment, name)
    if remote is not None:
        target, host = remote
        return await target.status(program, host=target.host(host))
    return await rt.target_for(environment).status(program)


def _running(state: InstanceStatus) -> bool:
    return state.state in (RUNNING, STARTING, BACKOFF)


async def start(
    rt: Runtime,
    environment: str,
    name: str,
    progress: Progress = _quiet,
    *,
    ensured: bool = False,
) -> StartResult:
    """Start the accessory unless it runs, and wait until its health check passes. A running
    one is left as it is (DIFFERS when its config changed since it started)."""
    accessory = configured(rt, environment, name)
    if not ensured:
        await _ensure_target(rt, environment)
    target = rt.target_for(environment)
    host = host_of(rt, environment, name, accessory)
    before = await status(rt, environment, name)
    record = rt.store.get_accessory(environment, name)
    if _running(before) and record is not None:
        same = not _changed(rt, environment, name, accessory, record)
        return StartResult(name, ALREADY_RUNNING if same else DIFFERS, record, before.pid)
    endpoint = await _reserve(rt, environment, name, accessory, host)
    spec = spec_for(rt, environment, name, accessory, endpoint)
    record = AccessoryRecord(
        environment=environment,
        name=name,
        host=endpoint.host,
        port=endpoint.port,
        address=endpoint.address,
        config_digest=config_digest(spec),
        started_at=datetime.now(UTC),
    )
    # Recorded before the process exists: its port is never handed to an instance.
    rt.store.upsert_accessory(record)
    progress(f"[{name}] starting accessory {name} on {endpoint.host} at {endpoint.address}")
    await target.start(spec)
    await _wait_healthy(rt, environment, name, accessory, spec, endpoint)
    after = await status(rt, environment, name)
    return StartResult(name, STARTED, record, after.pid)


def _changed(
    rt: Runtime, environment: str, name: str, accessory: AccessoryConfig, record: AccessoryRecord
) -> bool:
    """Whether conveyor.yml now says other than what the running accessory started with."""
    if record.host != host_of(rt, environment, name, accessory):
        return True
    endpoint = Endpoint(record.host, split_address(record.address)[0], record.port)
    spec = spec_for(rt, environment, name, accessory, endpoint)
    return config_digest(spec) != record.config_digest or accessory.port not in (
        None,
        record.port,
    )


async def planned(rt: Runtime, environment: str, compare: bool) -> tuple[list[str], list[str]]:
    """The accessories of `environment` that do not run (a deploy starts them), and with
    `compare` (the config's variables and secrets at hand) a note for each running one
    whose config changed since it started (a deploy never restarts it)."""
    missing: list[str] = []
    notes: list[str] = []
    for name, accessory in rt.loaded.config.accessories_for(environment).items():
        state = await status(rt, environment, name)
        record = rt.store.get_accessory(environment, name)
        if not _running(state) or record is None:
            missing.append(name)
        elif compare and _changed(rt, environment, name, accessory, record):
            notes.append(StartResult(name, DIFFERS, record, state.pid).describe(environment))
    return missing, notes


async def _wait_healthy(
    rt: Runtime,
    environment: str,
    name: str,
    accessory: AccessoryConfig,
    spec: InstanceSpec,
    endpoint: Endpoint,
) -> None:
    """Wait until its health check passes; else stop it and fail with its log's tail."""
    from conveyor.checks.on_host import on_instance_host
    from conveyor.checks.wait import make_check, wait_until_healthy

    target = rt.target_for(environment)
    health = accessory.health
    check = make_check(health, endpoint.listen, endpoint.port, spec.release_dir, spec.env)
    check = on_instance_host(check, target, endpoint.host)
    restarts_before = (await status(rt, environment, name)).restarts

    async def alive() -> bool:
        now = await status(rt, environment, name)
        looping = now.restarts - restarts_before >= CRASH_LOOP_RESTARTS
        return now.state not in (FATAL, EXITED, STOPPED, UNKNOWN) and not looping

    try:
        await wait_until_healthy(
            check,
            interval=health.interval,
            healthy_threshold=health.healthy_threshold,
            timeout=accessory.start_timeout,
            is_alive=alive,
        )
    except HealthCheckError as error:
        lines = await _log_lines(rt, environment, name, LOG_LINES_ON_FAILURE)
        await target.stop(spec.name, accessory.stop_timeout)
        secrets = env_secrets(spec.env)
        tail = "\n".join(f"    {redact_text(printable(line), secrets)}" for line in lines)
        raise TargetError(
            f"accessory {name} of {environment} did not start: {error.message}\n"
            f"  last {LOG_LINES_ON_FAILURE} log lines:\n{tail or '    (no output)'}",
            hint=f"check accessories/{name}/run in conveyor.yml; all of its log: "
            f"conveyor accessory logs {environment} {name}",
        ) from None


async def stop(rt: Runtime, environment: str, name: str) -> InstanceStatus:
    """Stop it (SIGTERM, SIGKILL after its stop_timeout) and remove its program; its data
    directory and recorded port stay. Returns its state before."""
    accessory = configured(rt, environment, name)
    before = await status(rt, environment, name)
    if before.state != UNKNOWN:
        await rt.target_for(environment).stop(
            accessory_program(environment, name), accessory.stop_timeout
        )
    return before


async def restart(
    rt: Runtime, environment: str, name: str, progress: Progress = _quiet
) -> StartResult:
    """Stop it, then start it with conveyor.yml's config as it is now."""
    configured(rt, environment, name)
    await _ensure_target(rt, environment)
    await stop(rt, environment, name)
    return await start(rt, environment, name, progress, ensured=True)


async def _log_lines(rt: Runtime, environment: str, name: str, lines: int) -> list[str]:
    program = accessory_program(environment, name)
    remote = _remote(rt, environment, name)
    if remote is not None:
        return await remote[0].logs(program, lines, host=remote[1])
    return await rt.target_for(environment).logs(program, lines)


async def logs(rt: Runtime, environment: str, name: str, lines: int) -> list[str]:
    """The last `lines` lines of its output (as it wrote them)."""
    configured(rt, environment, name)
    return await _log_lines(rt, environment, name, lines)


def follow(rt: Runtime, environment: str, name: str, lines: int) -> AsyncIterator[str]:
    """The last `lines` lines of its output, then each new one."""
    configured(rt, environment, name)
    program = accessory_program(environment, name)
    remote = _remote(rt, environment, name)
    if remote is not None:
        return remote[0].follow(program, lines, host=remote[1])
    return rt.target_for(environment).follow(program, lines)


def address(record: AccessoryRecord, accessory: AccessoryConfig) -> AccessoryAddress:
    """Where services reach it."""
    return address_of(record.address, accessory)


def addresses(rt: Runtime, environment: str, wanted: set[str]) -> dict[str, AccessoryAddress]:
    """The addresses of the accessories of `wanted` (those a service refers to); an error
    naming the command that starts one that never started."""
    found: dict[str, AccessoryAddress] = {}
    for name in sorted(wanted):
        accessory = configured(rt, environment, name)
        record = rt.store.get_accessory(environment, name)
        if record is not None:
            found[name] = address(record, accessory)
            continue
        known = _configured_address(rt, environment, name, accessory)
        if known is None:
            raise TargetError(
                f"accessory {name} of {environment} has never started, so its address is "
                "not known yet",
                hint=f"conveyor accessory start {environment} {name} (a deploy starts it "
                "first), or give it a port: (its address is then known before it starts)",
            )
        found[name] = known
    return found


def _configured_address(
    rt: Runtime, environment: str, name: str, accessory: AccessoryConfig
) -> AccessoryAddress | None:
    """The address of an accessory that never started, when `port:` fixes it: the checks
    a first deploy runs in the release before it starts the accessory (which migrations
    are pending, the migration's SQL) see the address its services will get."""
    if accessory.port is None:
        return None
    from conveyor.targets.local import LOCAL_INTERFACE

    host = host_of(rt, environment, name, accessory)
    listen = LOCAL_INTERFACE
    if host != LOCAL_HOST:
        from conveyor.targets.ssh import SshTarget

        target = rt.target_for(environment)
        if isinstance(target, SshTarget):
            listen = target.listen_address(target.host(host))
    endpoint = Endpoint(host, listen, accessory.port)
    return address_of(endpoint.address, accessory)


def address_of(joined: str, accessory: AccessoryConfig) -> AccessoryAddress:
    """The address services get of an accessory at `host:port`."""
    host, port = split_address(joined)
    return AccessoryAddress(host, port, fill_url(accessory.url_template, host, port))


def referenced(rt: Runtime, environment: str, texts: list[str]) -> dict[str, AccessoryAddress]:
    """The addresses of the accessories `texts` refer to (`${accessories.NAME.KEY}`)."""
    wanted = {name for text in texts for name, _ in references(text)}
    return addresses(rt, environment, wanted) if wanted else {}


def filled_command(rt: Runtime, environment: str, command: str | list[str]) -> str | list[str]:
    """A service's `run:` with the accessories' addresses filled in."""
    parts = [command] if isinstance(command, str) else command
    reached = referenced(rt, environment, parts)
    if not reached:
        return command
    if isinstance(command, str):
        return fill(command, reached)
    return [fill(part, reached) for part in command]


async def report(rt: Runtime, environment: str) -> list[dict[str, Any]]:
    """Each accessory of the environment as `accessory list --json` and `status` show it."""
    found = []
    for name in names(rt, environment):
        accessory = configured(rt, environment, name)
        record = rt.store.get_accessory(environment, name)
        state = await status(rt, environment, name) if record is not None else None
        found.append(entry(name, record, state, address(record, accessory) if record else None))
        found[-1]["data_dir"] = str(data_dir(rt, environment, name))
    return found


def entry(
    name: str,
    record: AccessoryRecord | None,
    state: InstanceStatus | None,
    reached: AccessoryAddress | None,
) -> dict[str, Any]:
    """One accessory as a plain mapping (pure)."""
    process = "not started" if record is None else (state.state if state else "unknown")
    if process == UNKNOWN:
        process = "stopped"
    return {
        "name": name,
        "kind": "accessory",
        "host": record.host if record else None,
        "port": record.port if record else None,
        "address": record.address if record else None,
        "url": reached.url if reached else None,
        "process": process,
        "pid": state.pid if state else None,
        "started_at": record.started_at.strftime("%Y-%m-%dT%H:%M:%SZ") if record else None,
    }


__all__ = [
    "ALREADY_RUNNING",
    "DIFFERS",
    "STARTED",
    "StartResult",
    "address",
    "addresses",
    "config_digest",
    "configured",
    "data_dir",
    "entry",
    "follow",
    "host_of",
    "logs",
    "names",
    "planned",
    "report",
    "restart",
    "spec_for",
    "start",
    "status",
    "stop",
]
