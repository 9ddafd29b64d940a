"""Deploy, resume, abort and roll back an environment.

Each operation plans from the desired releases and the observed state, takes
the environment's lock, journals its plan, runs it with the executor, and on
failure plans the way back to the previous releases and runs that too.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from conveyor.engine.executor import Executor, StepFailed
from conveyor.engine.plan import (
    FORWARD,
    REVERT,
    MarkCurrent,
    Plan,
    Step,
    steps_from_json,
    steps_to_json,
)
from conveyor.engine.runtime import Runtime
from conveyor.engine.strategies import ObservedInstance, ServiceGoal, plan_service
from conveyor.engine.unfinished import describe_unfinished, process_alive
from conveyor.errors import (
    ConveyorError,
    DeployError,
    LockHeldError,
    UnfinishedDeploymentError,
    UsageError,
)
from conveyor.store.records import (
    ABORTED,
    ABORTING,
    FAILED,
    ROLLED_BACK,
    ROLLING_BACK,
    RUNNING,
    STEP_DONE,
    SUCCEEDED,
    DeploymentRecord,
    LockRecord,
)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Proposal:
    """What a deploy would do: the target releases, what runs now, and the plan."""

    environment: str
    strategy: str
    releases: dict[str, str]  # every service -> release after the deploy
    previous: dict[str, str]  # every service -> release before (current)
    plan: Plan


def new_deployment_id() -> str:
    """Sortable, unique and short enough to type: `20261122-031502-7f3a`."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


# -- observation -----------------------------------------------------------------


async def observe(
    rt: Runtime, environment: str, service: str, *, live: bool = True
) -> tuple[ObservedInstance, ...]:
    """Recorded instances of a service, `serving` when the router gives them weight.

    With `live=False` (dry runs) the router is not asked and the recorded
    state stands in for it, so that planning starts no process.
    """
    records = rt.store.list_instances(environment=environment, service=service)
    if not records:
        return ()
    if not live:
        return tuple(ObservedInstance(r.name, r.release_id, r.state == "serving") for r in records)
    weights = await rt.router_for(environment).weights(environment, service)
    return tuple(
        ObservedInstance(r.name, r.release_id, weights.get(f"127.0.0.1:{r.port}", 0) > 0)
        for r in records
    )


def check_unfinished(rt: Runtime, environment: str) -> None:
    """Refuse to start anything while the environment is locked or a deployment unfinished."""
    unfinished = rt.store.unfinished_deployment(environment)
    if unfinished is None:
        lock = rt.store.get_lock(environment)
        if lock is not None and lock.deployment_id is None:
            raise LockHeldError(
                f"{environment} is locked by {lock.holder} since "
                f"{lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC: {lock.message or 'no message'}",
                hint=f'ask them, or run "conveyor lock release {environment}" if you are sure',
            )
        return
    lock = rt.store.get_lock(environment)
    if lock is not None and lock.deployment_id == unfinished.id and process_alive(lock):
        raise LockHeldError(
            f"deployment {unfinished.id} of {environment} is in progress "
            f"(pid {lock.pid} on {lock.hostname}, started by {lock.holder} "
            f"at {lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC)",
            hint="wait for it to finish",
        )
    raise UnfinishedDeploymentError(
        describe_unfinished(rt.store, unfinished),
        hint=f'run "conveyor resume {environment}" to finish it or '
        f'"conveyor abort {environment}" to roll it back',
    )


# -- planning ----------------------------------------------------------------------


async def propose(
    rt: Runtime,
    environment: str,
    releases: dict[str, str] | None = None,
    *,
    phase: str = FORWARD,
    name_tag: str = "",
    observe_live: bool = True,
) -> Proposal:
    """Plan moving `environment` to `releases` (default: the newest of each service)."""
    env_config = rt.environment(environment)
    config = rt.loaded.config
    current = rt.store.current_releases(environment)
    target = dict(current)
    wanted = releases if releases is not None else newest_releases(rt)
    for service, release in wanted.items():
        if service not in config.services:
            raise UsageError(f'unknown service "{service}"')
        target[service] = release
    tag = name_tag or secrets.token_hex(2)
    steps: list[Step] = []
    strategy = env_config.strategy
    for service in config.services:
        if service not in target:
            continue
        release = target[service]
        svc = config.service_for(environment, service)
        observed = await observe(rt, environment, service, live=observe_live)
        goal = ServiceGoal(
            service, release, svc.replicas, observed, name_prefix=f"{environment}-{service}-{tag}"
        )
        service_steps = plan_service(
            strategy.type,
            goal,
            max_surge=strategy.max_surge,
            max_unavailable=strategy.max_unavailable,
            phase=phase,
        )
        if _only_marks(service_steps) and current.get(service) == release:
            continue
        steps.extend(service_steps)
    return Proposal(environment, strategy.type, target, current, Plan(environment, tuple(steps)))


async def propose_revert(rt: Runtime, deployment: DeploymentRecord) -> list[Step]:
    """Steps that bring every service back to what ran before `deployment`."""
    config = rt.loaded.config
    env = deployment.environment
    strategy = rt.environment(env).strategy
    steps: list[Step] = []
    tag = secrets.token_hex(2) + "r"
    for service in config.services:
        release = deployment.previous.get(service)
        observed = await observe(rt, env, service)
        if release is None and not observed:
            continue
        svc = config.service_for(env, service)
        goal = ServiceGoal(
            service,
            release,
            svc.replicas if release else 0,
            observed,
            name_prefix=f"{env}-{service}-{tag}",
        )
        steps.extend(
            plan_service(
                strategy.type,
                goal,
                max_surge=strategy.max_surge,
                max_unavailable=strategy.max_unavailable,
                phase=REVERT,
            )
        )
    return steps


def _only_marks(steps: list[Step]) -> bool:
    return all(isinstance(s, MarkCurrent) for s in steps)


def newest_releases(rt: Runtime, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """The newest release of every service but those in `skip`."""
    newest: dict[str, str] = {}
    for service in rt.loaded.config.services:
        if service in skip:
            continue
        releases = rt.store.list_releases(service)
        if not releases:
            raise UsageError(
                f'service "{service}" has no release yet',
                hint="run: conveyor build   (or: conveyor deploy ENV --build)",
            )
        newest[service] = releases[0].id
    return newest


# -- operations ------------------------------------------------------------------------


async def deploy(
    rt: Runtime,
    proposal: Proposal,
    *,
    kind: str = "deploy",
    reason: str | None = None,
    progress: Progress = _quiet,
) -> DeploymentRecord:
    """Run a proposal; on failure restore the previous releases automatically."""
    from conveyor.releases.builder import verify_release

    env = proposal.environment
    check_unfinished(rt, env)
    for service, release_id in proposal.releases.items():
        if proposal.previous.get(service) != release_id:
            verify_release(rt.store, rt.paths, service, release_id)
    deployment = DeploymentRecord(
        id=new_deployment_id(),
        environment=env,
        kind=kind,
        status=RUNNING,
        strategy=proposal.strategy,
        releases=proposal.releases,
        previous=proposal.previous,
        user=rt.user,
        reason=reason,
        started_at=datetime.now(UTC),
        plan=steps_to_json(proposal.plan.steps),
    )
    rt.store.acquire_lock(_lock_for(rt, env, deployment.id, f"{kind} {deployment.id}"))
    try:
        rt.store.create_deployment(deployment)
        rt.store.add_event(
            kind,
            f"{kind} {deployment.id} started by {rt.user}",
            env,
            deployment.id,
            {"releases": proposal.releases, "previous": proposal.previous},
        )
        await rt.ensure_platform(env)
        await _ensure_routes(rt, env)
        return await _run_forward(rt, deployment, proposal.plan.steps, 1, progress)
    finally:
        rt.store.release_lock(env, deployment.id)


async def resume(rt: Runtime, environment: str, progress: Progress = _quiet) -> DeploymentRecord:
    """Finish an interrupted deployment.

    Moving forward, it runs the plan from the first step not journaled as
    done (each step is idempotent). Interrupted while restoring the previous
    releases, it plans that restoration again from what runs now: the
    planner converges from any state, whatever the journal says.
    """
    deployment = _take_over(rt, environment)
    try:
        await rt.ensure_platform(environment)
        await _ensure_routes(rt, environment)
        if deployment.status != RUNNING:
            final = ABORTED if deployment.status == ABORTING else ROLLED_BACK
            progress(f"resuming the restoration of the releases before {deployment.id}")
            reason = deployment.error or f"{deployment.id} was interrupted"
            return await _revert(rt, deployment, final, reason, progress)
        steps = steps_from_json(deployment.plan)
        journal = {s.index: s.status for s in rt.store.list_steps(deployment.id)}
        first = next(
            (i for i in range(1, len(steps) + 1) if journal.get(i) != STEP_DONE), len(steps) + 1
        )
        progress(f"resuming {deployment.id} at step {first}/{len(steps)}")
        return await _run_forward(rt, deployment, steps[first - 1 :], first, progress)
    finally:
        rt.store.release_lock(environment, deployment.id)


async def abort(
    rt: Runtime, environment: str, reason: str | None = None, progress: Progress = _quiet
) -> DeploymentRecord:
    """Stop an unfinished deployment and restore the releases that ran before it."""
    deployment = _take_over(rt, environment)
    why = reason or f"aborted by {rt.user}"
    try:
        await rt.ensure_platform(environment)
        await _ensure_routes(rt, environment)
        rt.store.update_deployment(deployment.id, status=ABORTING, error=why)
        rt.store.add_event(
            "abort", f"{deployment.id} aborted by {rt.user}: {why}", environment, deployment.id
        )
        return await _revert(rt, deployment, ABORTED, why, progress)
    finally:
        rt.store.release_lock(environment, deployment.id)


async def down(
    rt: Runtime, environment: str, progress: Progress = _quiet
) -> DeploymentRecord | None:
    """Drain and stop every instance of the environment, then stop routing to it."""
    check_unfinished(rt, environment)
    await rt.ensure_platform(environment)
    steps: list[Step] = []
    current = rt.store.current_releases(environment)
    for service in rt.loaded.config.services:
        observed = await observe(rt, environment, service)
        if observed or current.get(service):
            goal = ServiceGoal(service, None, 0, observed)
            steps.extend(plan_service("immediate", goal))
    if not steps:
        await rt.router_for(environment).remove_environment(environment)
        return None
    proposal = Proposal(environment, "immediate", {}, current, Plan(environment, tuple(steps)))
    record = await deploy(rt, proposal, kind="down", reason="conveyor down", progress=progress)
    await rt.router_for(environment).remove_environment(environment)
    return record


# -- internals ---------------------------------------------------------------------------


async def _run_forward(
    rt: Runtime,
    deployment: DeploymentRecord,
    steps: list[Step] | tuple[Step, ...],
    first: int,
    progress: Progress,
) -> DeploymentRecord:
    executor = Executor(rt, deployment.environment, deployment.id, progress)
    try:
        await executor.run(steps, first)
    except StepFailed as failure:
        reason = failure.message
        rt.store.update_deployment(deployment.id, status=ROLLING_BACK, error=reason)
        rt.store.add_event(
            "failed", f"{deployment.id}: {reason}", deployment.environment, deployment.id
        )
        progress(f"deployment failed, restoring the previous releases: {failure.cause.message}")
        await _revert(rt, deployment, ROLLED_BACK, reason, progress)
        raise DeployError(
            f"deployment {deployment.id} of {deployment.environment} failed and was rolled back: "
            f"{reason}",
            hint=failure.hint
            or f"the previous releases still serve; see: conveyor history {deployment.environment}",
        ) from None
    rt.store.update_deployment(deployment.id, status=SUCCEEDED, finished=True)
    rt.store.add_event(
        "succeeded", f"{deployment.id} succeeded", deployment.environment, deployment.id
    )
    return _reload(rt, deployment.id)


async def _revert(
    rt: Runtime, deployment: DeploymentRecord, final: str, reason: str, progress: Progress
) -> DeploymentRecord:
    steps = await propose_revert(rt, deployment)
    current = _reload(rt, deployment.id)
    first = len(current.plan) + 1
    rt.store.update_deployment(deployment.id, plan=[*current.plan, *steps_to_json(steps)])
    return await _run_revert_steps(rt, deployment, steps, first, final, reason, progress)


async def _run_revert_steps(
    rt: Runtime,
    deployment: DeploymentRecord,
    steps: list[Step],
    first: int,
    final: str,
    reason: str | None,
    progress: Progress,
) -> DeploymentRecord:
    executor = Executor(rt, deployment.environment, deployment.id, progress)
    try:
        await executor.run(steps, first)
    except StepFailed as failure:
        message = f"{reason}; restoring the previous releases also failed: {failure.message}"
        rt.store.update_deployment(deployment.id, status=FAILED, error=message, finished=True)
        rt.store.add_event("failed", message, deployment.environment, deployment.id)
        raise DeployError(
            f"deployment {deployment.id} failed and could not be rolled back: {message}",
            hint=f"check the instances with: conveyor status {deployment.environment}",
        ) from None
    rt.store.update_deployment(deployment.id, status=final, error=reason, finished=True)
    rt.store.add_event(
        final,
        f"{deployment.id} {final.replace('_', ' ')}: {reason}",
        deployment.environment,
        deployment.id,
    )
    return _reload(rt, deployment.id)


def _take_over(rt: Runtime, environment: str) -> DeploymentRecord:
    """Claim an interrupted deployment's lock for this process."""
    rt.environment(environment)
    deployment = rt.store.unfinished_deployment(environment)
    if deployment is None:
        raise UsageError(
            f"{environment} has no unfinished deployment",
            hint=f"see what happened with: conveyor history {environment}",
        )
    lock = rt.store.get_lock(environment)
    if lock is not None and lock.deployment_id == deployment.id and process_alive(lock):
        raise LockHeldError(
            f"deployment {deployment.id} is still running (pid {lock.pid} on {lock.hostname})",
            hint="wait for it, or stop that process first",
        )
    if lock is not None and lock.deployment_id not in (None, deployment.id):
        raise LockHeldError(f"{environment} is locked by {lock.holder} for {lock.deployment_id}")
    if lock is None:
        rt.store.acquire_lock(_lock_for(rt, environment, deployment.id, f"resume {deployment.id}"))
    else:
        rt.store.update_lock(
            environment, pid=os.getpid(), hostname=socket.gethostname(), holder=rt.user
        )
    return deployment


def _lock_for(rt: Runtime, environment: str, deployment_id: str, message: str) -> LockRecord:
    return LockRecord(
        environment=environment,
        holder=rt.user,
        acquired_at=datetime.now(UTC),
        deployment_id=deployment_id,
        message=message,
        pid=os.getpid(),
        hostname=socket.gethostname(),
    )


async def _ensure_routes(rt: Runtime, environment: str) -> None:
    from conveyor.routers.base import RouteSpec

    env_config = rt.environment(environment)
    routes = [
        RouteSpec(
            service=name,
            path=svc.route.path,
            host=svc.route.host,
            strip_prefix=svc.route.strip_prefix,
        )
        for name, svc in rt.loaded.config.services.items()
    ]
    await rt.router_for(environment).ensure_environment(environment, env_config.listen, routes)


def _reload(rt: Runtime, deployment_id: str) -> DeploymentRecord:
    record = rt.store.get_deployment(deployment_id)
    if record is None:  # pragma: no cover - we just wrote it
        raise ConveyorError(f"deployment {deployment_id} vanished from the state store")
    return record
