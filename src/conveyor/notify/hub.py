"""Delivering deployment events to the `notify:` targets, without ever failing a deploy.

`publish` hands an event to every target whose filters match and returns at
once; deliveries to one target go out in order (GitHub needs its deployment
created before its statuses), each retried with backoff, and every outcome
is recorded (`conveyor history` shows the failures). `drain` waits for what
is still on its way, bounded, before the command exits.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.config.models import NotifyConfig
from conveyor.notify.events import DeployEvent
from conveyor.notify.senders import (
    NotifyError,
    endpoint,
    send_email,
    send_github,
    send_slack,
    send_webhook,
)
from conveyor.redaction import redact_registered
from conveyor.store.records import DeploymentRecord, NotificationRecord

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime

JOB_FAILED = "job_failed"
NOT_RELEASES = (JOB_FAILED, "alert_firing", "alert_resolved")  # GitHub targets get none
BACKOFF_S = (0.5, 1.0, 2.0)  # waits between the attempts: 4 attempts in all
DRAIN_TIMEOUT_S = 30.0


def target_name(target: NotifyConfig) -> str:
    """How a target appears in records: its kind and, where harmless, where it goes
    (a URL's path and query may hold a token; a Slack URL always does)."""
    if target.github is not None:
        return f"github {target.github.repository}"
    if target.email is not None:
        return f"email {', '.join(target.email.to)}"
    if target.webhook is not None:
        return f"webhook {endpoint(target.webhook.url)}"
    return "slack"  # its URL is a secret


def matches(target: NotifyConfig, event: str, environment: str) -> bool:
    return (not target.events or event in target.events) and (
        not target.environments or environment in target.environments
    )


class NotificationHub:
    """The deliveries of one command."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._last: dict[int, asyncio.Task[None]] = {}  # per target, its latest delivery
        self._tasks: set[asyncio.Task[None]] = set()

    def event(self, kind: str, deployment: DeploymentRecord) -> DeployEvent:
        config = self.rt.loaded.config
        commits = {}
        for service, release_id in deployment.releases.items():
            release = self.rt.store.get_release(service, release_id)
            if release is not None and release.git_commit:
                commits[service] = release.git_commit
        env = config.environments.get(deployment.environment)
        url = env.effective_url if env is not None else ""
        approval_required = env is not None and env.approvals is not None
        return DeployEvent(
            event=kind,
            project=config.project,
            environment=deployment.environment,
            deployment=deployment.id,
            kind=deployment.kind,
            status=deployment.status,
            user=deployment.user,
            releases=dict(deployment.releases),
            previous=dict(deployment.previous),
            commits=commits,
            url=url,
            approval_required=approval_required and deployment.kind == "deploy",
            reason=redact_registered(deployment.reason) if deployment.reason else None,
            error=redact_registered(deployment.error) if deployment.error else None,
        )

    def publish(self, kind: str, deployment: DeploymentRecord) -> None:
        """Send `kind` about `deployment` to every matching target, in the background."""
        if self._targets(kind, deployment.environment):
            self.publish_event(self.event(kind, deployment))

    def _targets(self, kind: str, environment: str) -> list[tuple[int, NotifyConfig]]:
        return [
            (index, target)
            for index, target in enumerate(self.rt.loaded.config.notify)
            if matches(target, kind, environment)
            # GitHub deployments are about releases, not about a job's runs or alerts
            and not (target.github is not None and kind in NOT_RELEASES)
        ]

    def publish_event(self, event: DeployEvent) -> None:
        """Send `event` to every target whose filters match it, in the background."""
        for index, target in self._targets(event.event, event.environment):
            previous = self._last.get(index)
            task = asyncio.create_task(self._deliver(target, target_name(target), event, previous))
            self._last[index] = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Wait for the deliveries under way (a target that hangs is given up)."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)  # each records that it was given up

    async def _deliver(
        self,
        target: NotifyConfig,
        name: str,
        event: DeployEvent,
        previous: asyncio.Task[None] | None,
    ) -> None:
        error = ""
        attempts = 0
        data: dict[str, Any] = {}
        try:
            if previous is not None:
                await asyncio.wait([previous])  # in order; its failure is its own
            for wait in (*BACKOFF_S, None):
                attempts += 1
                try:
                    data = await self._send(target, name, event)
                    error = ""
                    break
                except NotifyError as failure:
                    error = failure.message
                if wait is not None:
                    await asyncio.sleep(wait)
        except asyncio.CancelledError:
            given_up = "given up: still not delivered when the command ended"
            error = f"{given_up} ({error})" if error else given_up
            raise
        except Exception as failure:  # a bug in a sender must not fail a deploy
            error = f"{type(failure).__name__}: {failure}"
        finally:
            self.rt.store.add_notification(
                NotificationRecord(
                    target=name,
                    event=event.event,
                    status="failed" if error else "delivered",
                    attempts=attempts,
                    at=datetime.now(UTC),
                    deployment_id=event.deployment,
                    environment=event.environment,
                    error=error or None,
                    data=data,
                )
            )

    async def _send(self, target: NotifyConfig, name: str, event: DeployEvent) -> dict[str, Any]:
        if target.webhook is not None:
            return await send_webhook(target.webhook, event)
        if target.slack is not None:
            return await send_slack(target.slack, event)
        if target.email is not None:
            return await send_email(target.email, event)
        assert target.github is not None
        return await send_github(
            target.github,
            event,
            known=lambda deployment: self._github_id(name, deployment=deployment),
            previous_active=lambda: self._github_id(
                name, environment=event.environment, succeeded_before=event.deployment
            ),
        )

    def _github_id(
        self,
        name: str,
        *,
        deployment: str | None = None,
        environment: str | None = None,
        succeeded_before: str | None = None,
    ) -> int | None:
        records = self.rt.store.list_notifications(deployment, target=name, environment=environment)
        for record in reversed(records):
            github_id = record.data.get("github_deployment_id")
            if github_id is None or record.status != "delivered":
                continue
            if succeeded_before is not None and (
                record.event != "succeeded" or record.deployment_id == succeeded_before
            ):
                continue
            return int(github_id)
        return None
