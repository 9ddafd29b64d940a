"""`conveyor dora [ENV] [--since 30d] [--json]`: DORA's four keys from the history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from conveyor.cli.context import STATE, JsonOption, runtime
from conveyor.cli.output import emit_json, say
from conveyor.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command()(dora)


def dora(
    environment: str | None = typer.Argument(
        None, help='The environment (default: "production", or the last one in conveyor.yml).'
    ),
    since: str = typer.Option(
        "30d", "--since", help='How far back: "30d", "12w", "48h", or a date (2026-11-01).'
    ),
    as_json: bool = JsonOption,
) -> None:
    """Deployment frequency, lead time for changes, change failure rate and time to
    restore of an environment, from Conveyor's history and git."""
    if STATE.server:
        from conveyor.remote import commands

        commands.dora(environment, since, as_json)

        return
    rt = runtime(defer_unset=True)
    name = environment or default_environment(list(rt.loaded.config.environments))
    until = datetime.now(UTC)
    start = since_start(since, until)
    print_dora(dora_json(rt, name, start, until), as_json)


def default_environment(names: list[str]) -> str:
    """The environment of `conveyor dora` without one: production, else the last one."""
    return "production" if "production" in names else names[-1]


def print_dora(data: dict[str, Any], as_json: bool) -> None:
    """`conveyor dora` of its `--json` (here or from a server)."""
    if as_json:
        emit_json(data)
        return
    name = data["environment"]
    start, until = datetime.fromisoformat(data["since"]), datetime.fromisoformat(data["until"])
    days = (until - start).total_seconds() / 86400
    say(
        f"DORA metrics of {name}, {start:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC "
        f"({days:g} days)"
    )
    for label, value, band in dora_rows(data):
        say(f"  {label:<22} {value:<58} {band or '-'}")


def dora_rows(data: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(key, what it measured, band) of each DORA key of `dora_json`'s data, as
    `conveyor dora` and the dashboard show them."""
    frequency, lead = data["deployment_frequency"], data["lead_time"]
    rate, restore = data["change_failure_rate"], data["time_to_restore"]
    return [
        (
            "deployment frequency",
            f"{frequency['deployments']} deployments, {frequency['per_day']:.2f} a day, "
            f"{frequency['per_week']:.1f} a week",
            frequency["band"],
        ),
        (
            "lead time for changes",
            f"median {_span(lead['median_seconds'])} over {lead['commits']} commits"
            if lead["commits"]
            else "no commit reached it",
            lead["band"],
        ),
        (
            "change failure rate",
            f"{rate['failed']} of {rate['deployments']} deployments ({rate['rate'] * 100:.1f} %)"
            if rate["deployments"]
            else "no deployment",
            rate["band"],
        ),
        (
            "time to restore",
            f"median {_span(restore['median_seconds'])} over {restore['restored']} restores"
            f", {restore['open']} open"
            if restore["restored"]
            else f"nothing to restore, {restore['open']} open",
            restore["band"],
        ),
    ]


def dora_json(rt: Any, name: str, start: datetime, until: datetime) -> dict[str, Any]:
    """`conveyor dora --json` of environment `name` (and `conveyor server`'s answer)."""
    from functools import cache

    from conveyor.dora import alerts_from_events, four_keys
    from conveyor.git import commits_between

    rt.environment(name)  # an unknown name is a usage error that lists the known ones
    releases = {(r.service, r.id): r for r in rt.store.list_releases()}

    @cache
    def commits(old: str | None, new: str) -> list[tuple[str, datetime]] | None:
        return commits_between(rt.loaded.root, old, new)

    events = [
        *rt.store.list_events(environment=name, kind="alert_firing"),
        *rt.store.list_events(environment=name, kind="alert_resolved"),
    ]
    report = four_keys(
        name,
        rt.store.list_deployments(name),
        releases,
        commits,
        start,
        until,
        alerts_from_events(events),
    )
    return report.to_json()


def since_start(text: str, now: datetime) -> datetime:
    """The start of `--since` TEXT before `now`."""
    from conveyor.config.durations import parse_span

    span = parse_span(text)
    if span is not None:
        return now - span
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f'--since "{text}": expected a span like 30d, 12w or 48h, or a date like 2026-11-01'
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment >= now:
        raise UsageError(f'--since "{text}" is not in the past')
    return moment


def _span(seconds: float | None) -> str:
    """3h 12m, 4m 10s, 2d 5h: the two largest units."""
    if seconds is None:
        return "-"
    left = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count or parts:
            parts.append(f"{count}{unit}")
    shown = parts[:2] if len(parts) > 1 and not parts[1].startswith("0") else parts[:1]
    return " ".join(shown) or "0s"
