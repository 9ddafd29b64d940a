"""What an alert does when it fires or resolves: an event, a notification, a rollback.

The event (`alert_firing` / `alert_resolved` in the environment's events, with the
deployment that served) is what `conveyor dora` counts; the notification goes to the
`notify:` targets like a deployment's (webhook body with `"alert"`, `"kind": "alert"`).
`on_fire: rollback` rolls back as `conveyor rollback ENV` does inside the rollback
window, as the user `monitor NAME`: one weight flip back to the previous release's
warm instances. Outside the window (no warm instances of the release to go back to) or
while a deployment runs, it does nothing but say so in the agent's log and the event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from conveyor.errors import ConveyorError
from conveyor.redaction import redact_registered

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.monitors.runner import Log, Watched

ROLLED_BACK_BY = "monitor"


def monitor_user(name: str) -> str:
    """Who acts for an alert in the history: `monitor errors`."""
    return f"{ROLLED_BACK_BY} {name}"


def record_and_notify(
    rt: Runtime, environment: str, watched: Watched, event: str, deployment_id: str | None
) -> None:
    from conveyor.notify.events import DeployEvent

    state = watched.state
    detail = redact_registered(state.detail)
    verb = "fired" if event == "alert_firing" else "resolved"
    rt.store.add_event(
        event,
        f"alert {watched.name} {verb}: {detail}",
        environment,
        deployment_id,
        {"alert": watched.name, "kind": watched.kind, "expression": watched.expression},
    )
    config = rt.loaded.config
    current = rt.store.current_releases(environment)
    env = config.environments.get(environment)
    rt.notifications.publish_event(
        DeployEvent(
            event=event,
            project=config.project,
            environment=environment,
            deployment=deployment_id or "",
            kind="alert",
            status=state.state,
            user=monitor_user(watched.name),
            releases=current,
            previous=current,
            url=env.effective_url if env is not None else "",
            reason=redact_registered(watched.expression),
            error=detail if event == "alert_firing" else None,
            alert=watched.name,
        )
    )


def _warm_target(rt: Runtime, environment: str, target: dict[str, str]) -> list[str]:
    """The services of `target` that change and have no warm instance of their release
    inside its window."""
    now = datetime.now(UTC)
    current = rt.store.current_releases(environment)
    missing = []
    instances = rt.store.list_instances(environment=environment)
    for service, release in target.items():
        if current.get(service) == release:
            continue
        warm = [
            i
            for i in instances
            if i.service == service
            and i.release_id == release
            and i.state == "warm"
            and i.warm_until is not None
            and i.warm_until > now
        ]
        if not warm:
            missing.append(service)
    return missing


async def roll_back(rt: Runtime, environment: str, watched: Watched, log: Log) -> str:
    """Roll `environment` back for alert `watched` when inside the rollback window; what
    happened, for the log."""
    from conveyor.engine import deployments
    from conveyor.engine.rollback import rollback_target

    if deployments.progressive(rt, environment) is None:
        return "not rolled back: the strategy keeps nothing warm (rolling, immediate)"
    if rt.store.unfinished_deployment(environment) is not None:
        return "not rolled back: a deployment of the environment is under way"
    try:
        target = rollback_target(rt, environment, [])
    except ConveyorError as error:
        return f"not rolled back: {error.message}"
    missing = _warm_target(rt, environment, target)
    if missing:
        return (
            "not rolled back: outside the rollback window (no warm instance of the "
            f"previous release of {', '.join(missing)})"
        )
    reason = f"alert {watched.name} fired: {redact_registered(watched.state.detail)}"
    user, rt.user = rt.user, monitor_user(watched.name)
    try:
        proposal = await deployments.propose(rt, environment, target, flip=True)
        if not proposal.plan.steps:
            return "not rolled back: nothing to change"
        record = await deployments.deploy(
            rt, proposal, kind="rollback", reason=reason, progress=lambda line: log(line)
        )
    except ConveyorError as error:
        return f"the rollback failed: {error.message}"
    finally:
        rt.user = user
    return f"rolled back: deployment {record.id} {record.status}"
