"""What the Alerts page shows. Monitors are not built yet: until they are, every
environment has none, and the page says so. This is the one function to wire to them
(their rules, their state: firing or resolved since when, their last value)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Alert:
    """One alert rule of an environment and its state."""

    environment: str
    rule: str  # e.g. "error_rate > 5% for 5m"
    state: str  # "firing" | "resolved" | "ok"
    since: str | None = None  # UTC ISO 8601
    value: str | None = None  # the latest value, as text
    message: str = ""


@dataclass(frozen=True)
class AlertsView:
    """The alert rules of the environments shown; `configured` False: no monitor at all."""

    configured: bool
    alerts: list[Alert] = field(default_factory=list)


def alerts_view(control: Any, environments: list[str]) -> AlertsView:
    """The alerts of `environments` (those the token may see)."""
    return AlertsView(configured=False)
