"""`conveyor status`, `conveyor history` and `conveyor logs`."""

from __future__ import annotations

from typing import Any

import typer

from conveyor.cli.context import STATE, JsonOption, run, runtime
from conveyor.cli.output import console, emit_json, iso, local_time, say


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(history)
    app.command()(logs)


def status(
    environment: str | None = typer.Argument(None, help="Only this environment."),
    as_json: bool = JsonOption,
) -> None:
    """What runs where: URL, current release per service, each instance and its state."""
    if STATE.server:
        from conveyor.remote import commands

        commands.status(environment, as_json)

        return
    report = _status_report(environment)
    print_status(report, as_json)


def print_status(report: dict[str, Any], as_json: bool) -> None:
    """`conveyor status` of its `--json` report (here or from a server)."""
    if as_json:
        emit_json(report)
        return
    for env_report in report["environments"]:
        _print_status(env_report)


def _status_report(environment: str | None) -> dict[str, Any]:
    """The report from the cached config summary and a SQLite snapshot when they are usable
    (no pydantic, no SQLAlchemy), else from the full config and the store."""
    from conveyor.engine.status import fast_sources, status_report

    fast = fast_sources(STATE.config_path, environment)
    if fast is not None:
        from conveyor.store.snapshot import SnapshotUnavailable

        names = [environment] if environment else list(fast.config.environments)
        try:
            with fast.reader:
                if not _on_hosts(fast.config, fast.reader, names):
                    return status_report(fast.reader, fast.config, fast.paths, names)
        except SnapshotUnavailable:
            pass  # e.g. a database another tool changed: the store will say what is wrong

    rt = runtime(defer_unset=True)
    names = [environment] if environment else list(rt.loaded.config.environments)
    return run(full_status_report(rt, names))


async def full_status_report(rt: Any, names: list[str]) -> dict[str, Any]:
    """The status report of these environments from the full config and the store (what
    `conveyor server` answers too)."""
    from conveyor.config.cache import ConfigSummary
    from conveyor.engine.hosts_view import observe_environments
    from conveyor.engine.status import status_report

    for name in names:
        rt.environment(name)
    hosts = await observe_environments(rt, names)
    return status_report(rt.store, ConfigSummary.of(rt.loaded.config), rt.paths, names, hosts)


def _on_hosts(config: Any, reader: Any, names: list[str]) -> bool:
    """Whether one of the environments has instances or accessories on other hosts (the
    full runtime then asks them)."""
    return any(
        config.environments[n].target != "local"
        and (reader.list_instances(environment=n) or reader.list_accessories(n))
        for n in names
    )


def _print_status(report: dict[str, Any]) -> None:
    from rich.markup import escape

    out = console()
    out.print(
        f"[bold]{escape(report['name'])}[/bold]  {escape(report['url'])}  "
        f"[dim]({report['strategy']})[/dim]"
    )
    if report["unfinished"]:
        out.print(f"  [red]unfinished:[/red] {escape(report['unfinished']['summary'])}")
    if report["lock"]:
        lock = report["lock"]
        out.print(
            f"  [yellow]locked[/yellow] by {escape(lock['holder'])} since "
            f"{lock['acquired_at']}: {escape(lock['message'] or '')}"
        )
    for warning in report.get("warnings", []):
        out.print(f"  [yellow]warning:[/yellow] {escape(warning)}")
    for mismatch in report.get("mismatches", []):
        out.print(f"  [red]mismatch:[/red] {escape(mismatch)}")
    last = report["last_deployment"]
    if last:
        out.print(
            f"  last deployment {last['id']} {last['status']} "
            f"({last['kind']} by {escape(last['user'])})"
        )
    for service in report["services"]:
        release = service["release"] or "not deployed"
        kind = service.get("kind", "web")
        out.print(
            f"  [bold]{escape(service['name'])}[/bold] ({kind}) {escape(release)}  "
            f"{service['healthy']}/{service['replicas']} "
            f"{'serving' if kind == 'web' else 'running'}"
        )
        for inst in service["instances"]:
            extra = f" restarts={inst['restarts']}" if inst["restarts"] else ""
            if inst.get("warm_until"):
                extra += f" (rollback window until {inst['warm_until']})"
            where = "" if inst["host"] == "local" else escape(inst["host"])
            port = f"{where}:{inst['port']}" if inst["port"] else where or "-"  # a worker: none
            out.print(
                f"    {escape(inst['name'])}  {inst['release']}  {port}  "
                f"{inst['state']}  process={inst['process']}{extra}"
            )
    for alert in report.get("alerts", []):
        state = alert["state"]
        color = {"firing": "red", "pending": "yellow"}.get(state, "green")
        when = f" since {alert['since']}" if state != "ok" and alert["since"] else ""
        detail = f": {escape(alert['detail'])}" if state != "ok" and alert["detail"] else ""
        out.print(
            f"  {alert['kind']} [bold]{escape(alert['name'])}[/bold]  "
            f"{escape(alert['expression'])}  [{color}]{state}[/{color}]{when}{detail}"
        )
    for acc in report.get("accessories", []):
        where = "" if acc["host"] == "local" else escape(acc["host"])
        pid = f" pid={acc['pid']}" if acc["pid"] else ""
        out.print(
            f"  [bold]{escape(acc['name'])}[/bold] accessory  {where}:{acc['port']}  "
            f"process={acc['process']}{pid}"
        )
    out.print()


def history(
    environment: str = typer.Argument(..., help="Environment."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many deployments (and runs)."),
    as_json: bool = JsonOption,
) -> None:
    """Deployments of ENVIRONMENT, newest first, and its one-off commands (`conveyor run`)."""
    if STATE.server:
        from conveyor.remote import commands

        commands.history(environment, limit, as_json)

        return
    rt = runtime(defer_unset=True)
    rt.environment(environment)
    items = history_json(rt, environment, limit)
    if as_json:
        emit_json(items)
        return
    print_history(environment, items)


def print_history(environment: str, items: list[dict[str, Any]]) -> None:
    """The text of `conveyor history` from its `--json` (here or from a server)."""
    from rich.markup import escape
    from rich.table import Table

    from conveyor.cli.oneoff import RUN_KIND, print_runs

    records = [item for item in items if item["kind"] != RUN_KIND]
    runs = [item for item in items if item["kind"] == RUN_KIND]
    if not records:
        say(f"{environment} has no deployments yet")
        print_runs(runs)
        return
    table = Table(box=None, pad_edge=False)
    on_hosts = any(row.get("hosts") for row in records)  # a fleet's deployments say where
    columns = ["ID", "KIND", "STATUS", "STRATEGY", "RELEASES", *(["HOSTS"] * on_hosts)]
    for column in (*columns, "USER", "STARTED", "TOOK", "REASON"):
        # The id (to copy) and the reason (one line) stay whole; releases and times wrap.
        table.add_column(column, no_wrap=column in ("ID", "KIND", "STATUS", "REASON"))
    for row in records:
        took = row["duration_s"]
        table.add_row(
            row["id"],
            row["kind"],
            row["status"],
            row["strategy"],
            " ".join(f"{s}={r}" for s, r in sorted(row["releases"].items())) or "-",
            *([",".join(row.get("hosts") or []) or "-"] * on_hosts),
            row["user"],
            local_time(from_iso(row["started_at"])),
            f"{took:.1f}s" if took is not None else "-",
            reason_line(row["id"], row["error"] or row["reason"] or ""),
        )
    console().print(table)
    print_runs(runs)
    warnings = [
        f"{row['id']}: {message}" for row in records for message in row.get("hook_failures", [])
    ] + [
        f"{row['id']}: {n['event']} not delivered to {n['target']} after {n['attempts']} "
        f"attempts: {n['error']}"
        for row in records
        for n in row.get("notifications", [])
        if n["status"] != "delivered"
    ]
    for warning in warnings:
        console().print(f"[yellow]warning[/yellow] {escape(warning)}")


def from_iso(text: str | None) -> Any:
    """The datetime of a `--json` time (`2026-11-22T03:15:02Z`), None for none."""
    from datetime import datetime

    return datetime.fromisoformat(text) if text else None


REASON_CHARS = 100  # the REASON column of `history`; `explain` shows the whole text


def reason_line(deployment_id: str, text: str, limit: int = REASON_CHARS) -> str:
    """The first line of `text`, at most `limit` characters; when anything is left out, it
    ends with the command that shows all of it."""
    lines = text.strip().splitlines()
    first = " ".join(lines[0].split()) if lines else ""
    if len(lines) <= 1 and len(first) <= limit:
        return first
    pointer = f" … conveyor explain {deployment_id}"
    room = max(limit - len(pointer), 0)
    cut = first if len(first) <= room else first[: room - 1].rstrip() + "…"
    return cut + pointer


def history_json(rt: Any, environment: str, limit: int) -> Any:
    """`conveyor history --json` (and `conveyor server`'s answer): deployments, newest
    first, with their notifications, and the one-off runs."""
    from conveyor.cli.deploy import deployment_json
    from conveyor.cli.oneoff import history_runs, with_runs

    records = rt.store.list_deployments(environment, limit=limit)
    deliveries = _deliveries(rt, environment, records)
    hook_failures: dict[str | None, list[str]] = {}
    for event in rt.store.list_events(environment, kind="hook_failed"):
        hook_failures.setdefault(event.deployment_id, []).append(event.message)
    return with_runs(
        [
            {
                **deployment_json(d),
                "notifications": [notification_json(n) for n in deliveries.get(d.id, [])],
                "hook_failures": hook_failures.get(d.id, []),
            }
            for d in records
        ],
        history_runs(rt, environment, limit),
    )


def _deliveries(rt: Any, environment: str, records: list[Any]) -> dict[str, list[Any]]:
    """The notifications of each of `records`, by deployment id."""
    shown = {d.id for d in records}
    deliveries: dict[str, list[Any]] = {}
    for n in rt.store.list_notifications(environment=environment):
        if n.deployment_id in shown:
            deliveries.setdefault(n.deployment_id, []).append(n)
    return deliveries


def notification_json(n: Any) -> dict[str, Any]:
    return {
        "target": n.target,
        "event": n.event,
        "status": n.status,
        "attempts": n.attempts,
        "error": n.error,
        "at": iso(n.at),
    }


def _mask_secrets(rt: Any, environment: str, warn: Any) -> None:
    """Resolve the environment's secrets so that the apps' own output shows them masked
    (every output of Conveyor masks the values it knows); a secret that cannot be
    resolved here (no key on this machine) is warned about, not fatal."""
    from conveyor.errors import ConveyorError

    try:
        rt.secrets(environment)
    except ConveyorError as exc:
        warn(
            f"the secrets of {environment} cannot be resolved here, so the output below is "
            f"not masked: {exc.message}"
        )


def logs(
    environment: str = typer.Argument(..., help="Environment."),
    service: str = typer.Argument(..., help="Service."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(100, "--lines", "-n", min=0, help="Lines per instance."),
) -> None:
    """Output of the service's instances, each line prefixed with its instance (and its
    host, on other hosts)."""
    import sys

    from rich.markup import escape

    from conveyor.cli.output import err_console
    from conveyor.engine import instance_logs
    from conveyor.errors import UsageError

    rt = runtime(defer_unset=True)
    rt.environment(environment)
    if service not in rt.loaded.config.services:
        raise UsageError(f'unknown service "{service}"')
    instances = rt.store.list_instances(environment=environment, service=service)
    if not instances:
        raise UsageError(
            f"{service} has no instance in {environment}",
            hint=f"see: conveyor status {environment}",
        )

    def write(line: str) -> None:
        sys.stdout.write(line + "\n")
        if follow:
            sys.stdout.flush()

    def warn(message: str) -> None:
        sys.stdout.flush()
        err_console().print(f"[yellow]warning:[/yellow] {escape(message)}")

    _mask_secrets(rt, environment, warn)
    target = rt.target_for(environment)
    reader = instance_logs.follow if follow else instance_logs.tail
    try:
        run(reader(target, instances, lines, write, warn))
        sys.stdout.flush()
    except KeyboardInterrupt:
        return
