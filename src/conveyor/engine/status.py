"""The status report of an environment, as plain data (rendered or `--json`)."""

from __future__ import annotations

from typing import Any

from conveyor.engine.runtime import Runtime
from conveyor.targets.base import InstanceStatus


def _iso(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def live_processes(rt: Runtime) -> dict[str, InstanceStatus] | None:
    """Process states from supervisord, or None when it is not running (never starts it)."""
    if not rt.paths.supervisor_socket.exists():
        return None
    try:
        return {p.status.name: p.status for p in rt.supervisor.all_programs(owner="instance")}
    except Exception:
        return None


def environment_status(rt: Runtime, name: str) -> dict[str, Any]:
    """URL, lock, unfinished work, and per service its release and instances."""
    from conveyor.engine.deployments import describe_unfinished, process_alive

    env = rt.environment(name)
    store = rt.store
    current = store.current_releases(name)
    processes = live_processes(rt)
    lock = store.get_lock(name)
    unfinished = store.unfinished_deployment(name)
    unfinished_report = None
    if unfinished is not None:
        in_progress = (
            lock is not None and lock.deployment_id == unfinished.id and process_alive(lock)
        )
        unfinished_report = {
            "id": unfinished.id,
            "status": unfinished.status,
            "in_progress": in_progress,
            "summary": f"deployment {unfinished.id} is in progress"
            if in_progress
            else describe_unfinished(rt, unfinished)
            + f'; run "conveyor resume {name}" or "conveyor abort {name}"',
        }
    latest = store.list_deployments(name, limit=1)
    services = []
    for service in rt.loaded.config.services:
        svc = rt.loaded.config.service_for(name, service)
        instances = []
        for inst in store.list_instances(environment=name, service=service):
            live = processes.get(inst.name) if processes is not None else None
            instances.append(
                {
                    "name": inst.name,
                    "release": inst.release_id,
                    "port": inst.port,
                    "address": f"127.0.0.1:{inst.port}",
                    "state": inst.state,
                    "process": live.state
                    if live
                    else ("unknown" if processes is None else "missing"),
                    "pid": live.pid if live else None,
                    "restarts": live.restarts if live else 0,
                    "since": _iso(inst.created_at),
                }
            )
        healthy = sum(1 for i in instances if i["state"] == "serving" and i["process"] == "running")
        services.append(
            {
                "name": service,
                "release": current.get(service),
                "replicas": svc.replicas,
                "healthy": healthy,
                "instances": instances,
            }
        )
    last = latest[0] if latest else None
    return {
        "name": name,
        "url": env.effective_url,
        "listen": env.listen,
        "strategy": env.strategy.type,
        "lock": None
        if lock is None
        else {
            "holder": lock.holder,
            "acquired_at": _iso(lock.acquired_at),
            "deployment_id": lock.deployment_id,
            "message": lock.message,
        },
        "unfinished": unfinished_report,
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
    }
