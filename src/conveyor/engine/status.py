"""The status report of environments, as plain data (rendered or `--json`).

There is one report, built from two small inputs so that `conveyor status`
can answer without its heaviest imports:

* the config as a `ConfigSummary`: from a full `Config`, or from the cache
  that every successful `load_config` refreshes (no pydantic);
* the state through a `StatusReader`: the `Store`, or a `SnapshotReader` on
  the SQLite file (no SQLAlchemy).

`fast_sources` decides whether the second pair can be used; when it cannot
(the config changed, a referenced environment variable changed, the database
is PostgreSQL, missing or not migrated), the caller opens the normal runtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.paths import Paths
from conveyor.store.records import (
    AccessoryRecord,
    AlertRecord,
    DeploymentRecord,
    InstanceRecord,
    LockRecord,
    StepRecord,
)
from conveyor.targets.base import accessory_program

if TYPE_CHECKING:
    from conveyor.config.cache import ConfigSummary
    from conveyor.engine.hosts_view import HostsView
    from conveyor.store.snapshot import SnapshotReader
    from conveyor.targets.base import InstanceStatus


class StatusReader(Protocol):
    """The reads a status report needs; `Store` and `SnapshotReader` both provide them."""

    def current_releases(self, environment: str) -> dict[str, str]:
        """Service -> release id currently deployed in `environment`."""
        ...

    def get_lock(self, environment: str) -> LockRecord | None:
        """Who holds the lock of `environment`, or None."""
        ...

    def unfinished_deployment(self, environment: str) -> DeploymentRecord | None:
        """The newest deployment of `environment` still pending or running, if any."""
        ...

    def list_deployments(
        self, environment: str | None = None, limit: int | None = None
    ) -> list[DeploymentRecord]:
        """Deployments, newest first."""
        ...

    def list_steps(self, deployment_id: str) -> list[StepRecord]:
        """The journal of a deployment, by step index."""
        ...

    def list_instances(
        self, environment: str | None = None, service: str | None = None
    ) -> list[InstanceRecord]:
        """Instances, oldest first (then by name)."""
        ...

    def list_alerts(self, environment: str | None = None) -> list[AlertRecord]:
        """The alerts of monitors, by environment and name."""
        ...

    def list_accessories(self, environment: str | None = None) -> list[AccessoryRecord]:
        """Accessories started once, by environment and name."""
        ...


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def live_processes(paths: Paths) -> dict[str, InstanceStatus] | None:
    """Process states from supervisord, or None when it is not running (never starts it)."""
    if not paths.supervisor_socket.exists():
        return None
    try:
        from conveyor.targets.supervisor import Supervisor

        programs = Supervisor(paths).all_programs()
    except Exception:
        return None
    return {p.status.name: p.status for p in programs if p.owner in ("instance", "accessory")}


def _unfinished_report(
    reader: StatusReader, name: str, lock: LockRecord | None
) -> dict[str, Any] | None:
    unfinished = reader.unfinished_deployment(name)
    if unfinished is None:
        return None
    # The same checks and wording as the commands that refuse to run over it.
    from conveyor.engine.unfinished import (
        describe_unfinished,
        next_commands,
        position,
        process_alive,
    )

    in_progress = lock is not None and lock.deployment_id == unfinished.id and process_alive(lock)
    if in_progress:
        summary = f"deployment {unfinished.id} is in progress {position(reader, unfinished)}"
    else:
        summary = f"{describe_unfinished(reader, unfinished)}; {next_commands(unfinished)}"
    return {
        "id": unfinished.id,
        "status": unfinished.status,
        "in_progress": in_progress,
        "summary": summary,
    }


def _process(
    processes: dict[str, InstanceStatus] | None,
    program: str,
    host: str,
    unreachable: frozenset[str],
    absent: str,
) -> tuple[InstanceStatus | None, str]:
    """The live status of `program` on `host` and its process state as status shows it
    (`absent` when its supervisord has no such program)."""
    live = processes.get(program) if processes is not None else None
    if live is not None:
        return live, live.state
    if host in unreachable:
        return None, "unreachable"
    return None, "unknown" if processes is None else absent


def environment_status(
    reader: StatusReader,
    config: ConfigSummary,
    name: str,
    processes: dict[str, InstanceStatus] | None,
    unreachable: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """URL, lock, unfinished work, and per service its release and instances.

    `name` must be an environment of `config`; `processes` is what
    `live_processes` returned (the local target) or what its hosts said (`HostsView`);
    instances on the hosts of `unreachable` have the process state `unreachable`.
    """
    env = config.environments[name]
    current = reader.current_releases(name)
    lock = reader.get_lock(name)
    unfinished = _unfinished_report(reader, name, lock)
    latest = reader.list_deployments(name, limit=1)
    services = []
    for service, replicas in env.replicas.items():
        instances = []
        for inst in reader.list_instances(environment=name, service=service):
            live, process = _process(processes, inst.name, inst.host, unreachable, "missing")
            instances.append(
                {
                    "name": inst.name,
                    "release": inst.release_id,
                    "host": inst.host,
                    "port": inst.port,
                    "address": inst.address,
                    "state": inst.state,
                    "process": process,
                    "pid": live.pid if live else None,
                    "restarts": live.restarts if live else 0,
                    "since": _iso(inst.created_at),
                    "warm_until": _iso(inst.warm_until) if inst.warm_until else None,
                }
            )
        # supervisord says "starting" for its first second; the health gate passed already.
        healthy = sum(
            1
            for i in instances
            if i["state"] == "serving" and i["process"] in ("running", "starting")
        )
        services.append(
            {
                "name": service,
                # web, worker or singleton (`conveyor.config.kinds`); an accessory, listed
                # beside the services, has the kind `kinds.ACCESSORY`
                "kind": env.kind(service),
                "release": current.get(service),
                "replicas": replicas,
                "healthy": healthy,
                "instances": instances,
            }
        )
    last = latest[0] if latest else None
    accessories = []
    for acc in reader.list_accessories(name):
        program = accessory_program(name, acc.name)
        live, process = _process(processes, program, acc.host, unreachable, "stopped")
        accessories.append(
            {
                "name": acc.name,
                "kind": "accessory",
                "host": acc.host,
                "port": acc.port,
                "address": acc.address,
                "process": process,
                "pid": live.pid if live else None,
                "started_at": _iso(acc.started_at),
            }
        )
    return {
        "name": name,
        "url": env.url,
        "listen": env.listen,
        "router_host": env.router_host,
        "strategy": env.strategy,
        "lock": None
        if lock is None
        else {
            "holder": lock.holder,
            "acquired_at": _iso(lock.acquired_at),
            "deployment_id": lock.deployment_id,
            "message": lock.message,
        },
        "unfinished": unfinished,
        "last_deployment": None
        if last is None
        else {
            "id": last.id,
            "kind": last.kind,
            "status": last.status,
            "user": last.user,
            "started_at": _iso(last.started_at),
            "finished_at": _iso(last.finished_at),
            "error": last.error,
        },
        "services": services,
        "accessories": accessories,
        "alerts": [_alert(a) for a in reader.list_alerts(name)],
    }


def _alert(alert: AlertRecord) -> dict[str, Any]:
    """An alert of `monitors:` as `status --json` shows it."""
    return {
        "name": alert.name,
        "kind": alert.kind,
        "expression": alert.expression,
        "state": alert.state,
        "since": _iso(alert.since),
        "fired_at": _iso(alert.fired_at),
        "resolved_at": _iso(alert.resolved_at),
        "detail": alert.detail,
        "deployment": alert.deployment_id,
    }


def status_report(
    reader: StatusReader,
    config: ConfigSummary,
    paths: Paths,
    names: list[str],
    hosts: dict[str, HostsView] | None = None,
) -> dict[str, Any]:
    """`conveyor status --json`: the project and the report of each environment in `names`.

    `hosts`: what the hosts of the environments on other hosts (`target: ssh`) said,
    by environment (`engine.hosts_view`); the others are this machine's supervisord's.
    """
    from conveyor.engine.serving import answers, gather, mismatches, router_pids

    processes = live_processes(paths)
    hosts = hosts or {}
    reports = []
    for name in names:
        view = hosts.get(name)
        if view is None:
            report = environment_status(reader, config, name, processes)
            report["warnings"] = []
        else:
            report = environment_status(reader, config, name, view.processes, view.unreachable)
            report["warnings"] = list(view.warnings)
        reports.append(report)
    holders = gather(reports)
    routers = router_pids(paths)
    for report in reports:
        remote = report["router_host"] != "local"
        report["mismatches"] = mismatches(
            report, holders, routers, answers(str(report["url"])) if remote else None
        )
    return {"project": config.project, "environments": reports}


@dataclass
class FastSources:
    """Config summary, state snapshot and paths, read without pydantic or SQLAlchemy."""

    config: ConfigSummary
    reader: SnapshotReader
    paths: Paths


def sqlite_state_file(paths: Paths, state_url: str | None) -> Path | None:
    """The SQLite file behind the state URL (unset: the home's), or None for any other URL.

    Only the plain `sqlite:///path` spelling counts; anything fancier (query
    parameters, escapes, in-memory) is left to SQLAlchemy.
    """
    if not state_url:
        return paths.state_db
    prefix = "sqlite:///"
    if not state_url.startswith(prefix):
        return None
    database = state_url[len(prefix) :]
    if not database or database == ":memory:" or any(c in database for c in "?%#"):
        return None
    return Path(database)


def fast_sources(config_path: Path | None, environment: str | None) -> FastSources | None:
    """The sources for a status report without full config load or store, if usable.

    `config_path` is `--config` (None: search upwards from the cwd). Returns
    None, and the caller does the full load, whenever anything is unusual:
    no cached summary for the file as it is now, an unknown `environment`
    (the full load reports it), a state database that is not SQLite, missing
    or not at the schema head.
    """
    from conveyor.config.cache import load_summary
    from conveyor.config.locate import locate_config
    from conveyor.errors import ConveyorError
    from conveyor.store.snapshot import SnapshotReader

    try:
        path, _ = locate_config(config_path)
    except ConveyorError:
        return None
    config = load_summary(path)
    if config is None or (environment is not None and environment not in config.environments):
        return None
    paths = Paths.for_project(path.resolve().parent)
    database = sqlite_state_file(paths, os.environ.get("CONVEYOR_STATE_URL"))
    if database is None:
        return None
    reader = SnapshotReader.open(database)
    if reader is None:
        return None
    return FastSources(config=config, reader=reader, paths=paths)
