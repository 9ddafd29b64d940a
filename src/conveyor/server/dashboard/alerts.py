"""What the Alerts page shows: the rules and probes of each environment's `monitors:`
and where their agent left them (`conveyor.monitors.state`, kept in the store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Alert:
    """One alert rule of an environment and its state."""

    environment: str
    rule: str  # e.g. "errors: error_rate > 5% for 5m"
    state: str  # "ok" | "pending" | "firing", or "not run yet"
    since: str | None = None  # UTC ISO 8601
    value: str | None = None  # the latest value, as text
    message: str = ""


@dataclass(frozen=True)
class AlertsView:
    """The alert rules of the environments shown; `configured` False: no monitor at all."""

    configured: bool
    alerts: list[Alert] = field(default_factory=list)


def alerts_view(control: Any, environments: list[str]) -> AlertsView:
    """The alerts of `environments` (those the token may see): each configured rule and
    probe, in the state its agent recorded last ("not run yet" before its first round)."""
    config = control.loaded().config
    alerts: list[Alert] = []
    for environment in environments:
        monitors = config.environments[environment].monitors
        if monitors is None:
            continue
        recorded = {a.name: a for a in control.store.list_alerts(environment)}
        for name in [*monitors.rules, *monitors.probes]:
            record = recorded.get(name)
            if record is None:
                alerts.append(Alert(environment, name, "not run yet"))
                continue
            since = record.since.isoformat() if record.since else None
            rule = f"{name}: {record.expression}" if record.expression else name
            alerts.append(Alert(environment, rule, record.state, since, record.detail))
    configured = any(config.environments[e].monitors is not None for e in environments)
    return AlertsView(configured=configured, alerts=alerts)
