"""Approvals of a deployment: recording decisions, and the step that waits for them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from conveyor.config.models import ApprovalsConfig
from conveyor.errors import ApprovalRejectedError, ConveyorError, UsageError
from conveyor.policies import ApprovalPolicy, ApprovalState, Decision, approval_state, refusal
from conveyor.store.records import AWAITING_APPROVAL, RUNNING, ApprovalRecord, DeploymentRecord

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime

POLL_S = 0.5


def policy_of(config: ApprovalsConfig) -> ApprovalPolicy:
    return ApprovalPolicy(
        required=config.required,
        approvers=tuple(config.approvers),
        prevent_self_approval=config.prevent_self_approval,
        expires=config.expires,
        wait_timer=config.wait_timer,
    )


def state_of(rt: Runtime, deployment: DeploymentRecord) -> ApprovalState:
    config = rt.environment(deployment.environment).approvals
    policy = policy_of(config) if config is not None else ApprovalPolicy(required=0)
    decisions = [
        Decision(a.user, a.approve, a.at, a.message) for a in rt.store.list_approvals(deployment.id)
    ]
    return approval_state(
        policy,
        rt.loaded.config.groups,
        deployment.user,
        deployment.started_at,
        decisions,
        datetime.now(UTC),
    )


def decide(
    rt: Runtime, deployment_id: str, *, approve: bool, message: str = ""
) -> tuple[DeploymentRecord, ApprovalState]:
    """Record `rt.user`'s approval or rejection; refused with the reason when they may not."""
    deployment = rt.store.get_deployment(deployment_id)
    if deployment is None:
        raise UsageError(
            f'unknown deployment "{deployment_id}"',
            hint="see the waiting ones with: conveyor status",
        )
    if deployment.status != AWAITING_APPROVAL:
        raise ConveyorError(
            f"deployment {deployment_id} does not wait for approval (it is {deployment.status})"
        )
    config = rt.environment(deployment.environment).approvals
    if config is None:
        raise ConveyorError(f"{deployment.environment} has no approvals: section any more")
    why = refusal(policy_of(config), rt.loaded.config.groups, deployment.user, rt.user)
    if why is not None:
        raise ConveyorError(f"refused: {why}")
    rt.store.add_approval(
        ApprovalRecord(deployment_id, rt.user, approve, datetime.now(UTC), message)
    )
    verb = "approved" if approve else "rejected"
    rt.store.add_event(
        verb,
        f"{deployment_id} {verb} by {rt.user}" + (f": {message}" if message else ""),
        deployment.environment,
        deployment_id,
    )
    return deployment, state_of(rt, deployment)


async def await_approval(rt: Runtime, deployment_id: str, progress: Callable[[str], None]) -> str:
    """Wait until the deployment is approved; `ApprovalRejectedError` when it is rejected
    or expires. The deployment shows as awaiting_approval meanwhile."""
    deployment = rt.store.get_deployment(deployment_id)
    assert deployment is not None
    env = deployment.environment
    if deployment.status != AWAITING_APPROVAL:  # not when resumed while waiting
        rt.store.update_deployment(deployment_id, status=AWAITING_APPROVAL)
        rt.store.add_event(
            "awaiting_approval", f"{deployment_id} awaits approval in {env}", env, deployment_id
        )
        waiting = rt.store.get_deployment(deployment_id)
        if waiting is not None:
            rt.notifications.publish("awaiting_approval", waiting)
    told = ""
    while True:
        state = state_of(rt, deployment)
        if state.rejected_by is not None or state.expired:
            raise ApprovalRejectedError(
                f"deployment {deployment_id} was {state.summary}",
                hint="nothing was changed; deploy again to ask again",
            )
        if state.approved:
            rt.store.update_deployment(deployment_id, status=RUNNING)
            current = rt.store.get_deployment(deployment_id)
            if current is not None:
                rt.notifications.publish("approved", current)
            return state.summary
        if state.summary != told:
            told = state.summary
            progress(
                f"waiting for approval of {deployment_id} in {env} ({state.summary}): "
                f"conveyor approve {deployment_id}"
            )
        await asyncio.sleep(POLL_S)
