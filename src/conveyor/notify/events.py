"""What a notification says: one deployment event, as data every target formats its way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

TITLES = {  # of each of config.models.NotifyEvent
    "started": "started",
    "awaiting_approval": "awaits approval",
    "approved": "approved",
    "succeeded": "succeeded",
    "failed": "failed",
    "aborted": "was aborted",
    "rolled_back": "failed and was rolled back",
    "rejected": "was rejected",
    "refused": "was refused",
    "verify_failed": "failed its check after traffic (verify) and is rolled back",
    "job_failed": "failed",
    "alert_firing": "is firing",
    "alert_resolved": "resolved",
}


@dataclass(frozen=True)
class DeployEvent:
    """The JSON body of a webhook, and what Slack, email and GitHub are told."""

    event: str  # a config.models.NotifyEvent
    project: str
    environment: str
    deployment: str
    kind: str  # deploy | rollback | down
    status: str
    user: str
    releases: dict[str, str]
    previous: dict[str, str]
    commits: dict[str, str] = field(default_factory=dict)  # service -> git commit
    url: str = ""
    approval_required: bool = False  # the deploy waits for `conveyor approve` first
    reason: str | None = None
    error: str | None = None
    job: str | None = None  # the scheduled job of a job_failed event (its run is `deployment`)
    alert: str | None = None  # the rule or probe of an alert_firing / alert_resolved event
    time: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self) -> str:
        """`shop: deploy 20261201-... of staging succeeded`."""
        if self.alert is not None:
            return f"{self.project}: alert {self.alert} of {self.environment} {TITLES[self.event]}"
        if self.job is not None:
            return f"{self.project}: job {self.job} of {self.environment} {TITLES[self.event]}"
        return (
            f"{self.project}: {self.kind} {self.deployment} of {self.environment} "
            f"{TITLES.get(self.event, self.event)}"
        )

    def changes(self) -> list[str]:
        """`api 2026...-ab12 (was 2026...-cd34)` for each service that changes."""
        out = []
        for service, release in sorted(self.releases.items()):
            before = self.previous.get(service)
            if before != release:
                out.append(f"{service} {release}" + (f" (was {before})" if before else ""))
        return out

    def text(self) -> str:
        """Several lines for people: the headline, what changes, who, why."""
        lines = [self.headline()]
        lines += [f"  {line}" for line in self.changes()]
        lines.append(f"by {self.user}" + (f": {self.reason}" if self.reason else ""))
        if self.error:
            lines.append(f"error: {self.error}")
        if self.url:
            lines.append(self.url)
        return "\n".join(lines)
