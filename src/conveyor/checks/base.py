"""The `Check` protocol: one readiness, liveness or smoke check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from conveyor.checks.answers import Answer


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check attempt, with enough detail to explain a failure."""

    ok: bool
    detail: str  # e.g. "GET http://127.0.0.1:4001/health -> 503 in 12 ms"
    duration: float  # seconds
    answer: Answer | None = None  # an HTTP check's answer, whatever its status


class Check(Protocol):
    """A single check; `run` never raises for a failing check, it returns ok=False."""

    async def run(self) -> CheckResult:
        """Perform the check once, within its own timeout."""
        ...
