"""Deploy, resume, abort and roll back an environment.

Each operation plans from the desired releases and the observed state, takes
the environment's lock, journals its plan, runs it with the executor, and on
failure plans the way back to the previous releases and runs that too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from conveyor.config.kinds import ordered_services, service_kind
from conveyor.config.models import PROGRESSIVE, BlueGreenStrategy, CanaryStrategy
from conveyor.databases.frameworks import asks_pending
from conveyor.engine.executor import (
    AbortRequested,
    Executor,
    Paused,
    PromoteFull,
    StepFailed,
)
from conveyor.engine.hooks import commands
from conveyor.engine.lost_hosts import take_traffic_from
from conveyor.engine.plan import (
    FORWARD,
    REVERT,
    Analyze,
    AwaitApproval,
    MarkCurrent,
    Migrate,
    Pause,
    Plan,
    Preview,
    RestoreDatabase,
    RunHook,
    StartAccessory,
    StartAnalysis,
    StartInstances,
    Step,
    StopAnalysis,
    Verify,
    VerifyRelease,
    refuses,
    service_sequence,
    steps_from_json,
    steps_to_json,
)
from conveyor.engine.policies import Overrides, PolicyRefusedError, enforce
from conveyor.engine.runtime import Runtime
from conveyor.engine.safekeeping import ensure_room, unlock
from conveyor.engine.settings import with_settings
from conveyor.engine.strategies import (
    BASELINE,
    CANARY,
    STABLE,
    ObservedInstance,
    ServiceGoal,
    place,
    plan_flip,
    plan_service,
    with_shipping,
    with_smoke_tests,
)
from conveyor.engine.strategies.choice import service_strategy, without_traffic
from conveyor.engine.strategies.release_phase import Migration, plan_release_phase
from conveyor.engine.strategies.verify import plan_verify
from conveyor.engine.unfinished import describe_unfinished, next_commands, process_alive
from conveyor.errors import (
    AnalysisFailedError,
    ApprovalRejectedError,
    ConveyorError,
    DeployError,
    HostUnreachableError,
    LockHeldError,
    UnfinishedDeploymentError,
    UsageError,
    VerifyFailedError,
)
from conveyor.routers.tls import environment_tls
from conveyor.store.records import (
    ABORTED,
    ABORTING,
    AWAITING_APPROVAL,
    FAILED,
    PAUSED,
    REFUSED,
    REJECTED,
    REQUEST_ABORT,
    REQUEST_PAUSE,
    REQUEST_PROMOTE,
    REQUEST_PROMOTE_FULL,
    ROLLED_BACK,
    ROLLING_BACK,
    RUNNING,
    STEP_COMPLETE,
    STEP_SKIPPED,
    SUCCEEDED,
    DeploymentRecord,
    InstanceRecord,
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
    # (service, kind, strategy) of each service the plan moves, in the plan's order
    services: tuple[tuple[str, str, str], ...] = ()


def new_deployment_id() -> str:
    """Sortable, unique and short enough to type: `20261122-031502-7f3a`."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


# -- observation -----------------------------------------------------------------


async def observe(
    rt: Runtime,
    environment: str,
    service: str,
    *,
    live: bool = True,
    deployment: DeploymentRecord | None = None,
) -> tuple[ObservedInstance, ...]:
    """Recorded instances of a service, `serving` when the router gives them weight.

    With `live=False` (dry runs) the router is not asked and the recorded
    state stands in for it, so that planning starts no process. With an
    unfinished `deployment`, each instance gets its role in it.
    """
    records = rt.store.list_instances(environment=environment, service=service)
    if not records:
        return ()
    if not live or rt.loaded.config.services[service].route is None:
        # A worker has no router entry: it is in service once it passed its checks.
        weights = {r.address: int(r.state == "serving") for r in records}
    else:
        weights = await rt.router_for(environment).weights(environment, service)
    now = datetime.now(UTC)
    return tuple(
        ObservedInstance(
            r.name,
            r.release_id,
            weights.get(r.address, 0) > 0 if r.address else r.state == "serving",
            # Past its rollback window a warm instance is not reused: it is stopped.
            state="expired" if r.warm_until is not None and r.warm_until <= now else r.state,
            role=_role(r, deployment),
            host=r.host,
        )
        for r in records
    )


def _role(instance: InstanceRecord, deployment: DeploymentRecord | None) -> str:
    if deployment is None:
        return ""
    if instance.release_id == deployment.releases.get(instance.service):
        return CANARY
    if instance.deployment_id == deployment.id:
        return BASELINE
    return STABLE


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
            hint=f'wait for it to finish, or steer it with "conveyor promote|pause|abort '
            f'{environment}"',
        )
    raise UnfinishedDeploymentError(
        describe_unfinished(rt.store, unfinished), hint=next_commands(unfinished)
    )


def progressive(rt: Runtime, environment: str) -> BlueGreenStrategy | CanaryStrategy | None:
    """The environment's strategy when it is blue_green or canary."""
    strategy = rt.environment(environment).strategy
    return strategy if isinstance(strategy, BlueGreenStrategy | CanaryStrategy) else None


async def propose(
    rt: Runtime,
    environment: str,
    releases: dict[str, str] | None = None,
    *,
    phase: str = FORWARD,
    name_tag: str = "",
    observe_live: bool = True,
    flip: bool = False,
    migrate: bool = False,
    allowed_by: str = "",
) -> Proposal:
    """Plan moving `environment` to `releases` (default: the newest of each service).

    With `flip` (rollbacks under blue_green and canary), each service flips
    its traffic back to instances of the release that are still warm,
    starting only the missing ones, and keeps the replaced ones warm. With
    `migrate` (deploys, not rollbacks), the plan starts with the release
    phase of every service that changes and has a `migrate:` block: check,
    back up, migrate. `allowed_by` names who passed --allow-breaking-migrations.
    """
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
    target_of = rt.target_for(environment)
    window = (
        strategy.rollback_window
        if isinstance(strategy, BlueGreenStrategy | CanaryStrategy)
        else 0.0
    )
    for service in ordered_services(config):
        if service not in target:
            continue
        release = target[service]
        svc = config.service_for(environment, service)
        observed = await observe(rt, environment, service, live=observe_live)
        goal = ServiceGoal(
            service,
            release,
            svc.replicas,
            observed,
            name_prefix=f"{environment}-{service}-{tag}",
            hosts=target_of.hosts(svc.roles),
        )
        if current.get(service) == release and all(
            i.release == release and i.serving for i in observed
        ):
            continue
        smoke = [t.model_dump(mode="json", exclude_none=True) for t in svc.smoke]
        service_steps = _service_steps(
            rt, environment, goal, phase=phase, flip=flip, keep_warm=window, smoke=smoke
        )
        if _only_marks(service_steps) and current.get(service) == release:
            continue
        steps.extend(service_steps)
    verifications = _verifications(steps)
    if migrate:
        steps = [*_release_phase(rt, current, target, strategy.type, allowed_by), *steps]
    steps = with_shipping(steps, target_of.ships_releases, run_hosts(rt, environment))
    if migrate and steps:  # a deploy ends with its check after traffic
        first_service = next(iter(config.services))
        url = env_config.effective_url
        steps.extend(plan_verify(env_config.verify, url, first_service, config.analysis))
    if migrate:
        first_service = ordered_services(config)[0]
        if steps and commands(rt, "pre_deploy", environment):
            steps = [RunHook(first_service, hook="pre_deploy"), *steps]
        if env_config.approvals is not None and steps:
            steps = [AwaitApproval(first_service), *steps]
    steps = [*verifications, *steps]
    if phase == FORWARD:
        starts = await missing_accessories(rt, environment, compare=observe_live)
        steps = with_accessories(steps, starts)
    kind = "flip" if flip else strategy.type
    plan = Plan(environment, tuple(steps))
    return Proposal(environment, kind, target, current, plan, _services_of(rt, environment, plan))


def _services_of(rt: Runtime, environment: str, plan: Plan) -> tuple[tuple[str, str, str], ...]:
    """(service, kind, strategy) of each service `plan` moves, in its order."""
    config = rt.loaded.config
    return tuple(
        (
            name,
            service_kind(config.services[name]),
            service_strategy(config, environment, name).type,
        )
        for name in service_sequence(plan.steps)
    )


async def missing_accessories(rt: Runtime, environment: str, compare: bool) -> list[Step]:
    """A start step for each accessory of the environment that does not run (asked without
    starting anything: a dry run asks too); with `compare`, a note in `rt.notes` for each
    running one whose config changed (a deploy never restarts it)."""
    from conveyor.engine import accessories

    missing, notes = await accessories.planned(rt, environment, compare)
    rt.notes.extend(notes)
    config = rt.loaded.config.accessories_for(environment)
    return [
        StartAccessory(name, host=accessories.host_of(rt, environment, name, config[name]))
        for name in missing
    ]


def with_accessories(steps: list[Step], starts: list[Step]) -> list[Step]:
    """`steps` with the accessories' `starts` after the checks that change nothing (so that a
    refusal still changes nothing) and before anything else: migrations and instances
    find them running."""
    at = next((i for i, s in enumerate(steps) if not (s.gate or s.changes_nothing)), len(steps))
    return [*steps[:at], *starts, *steps[at:]]


def run_hosts(rt: Runtime, environment: str) -> dict[str, str]:
    """Where each service's release phase and one-off commands run: the environment's
    `run_host` when it carries the service, else the first host that does."""
    chosen = rt.environment(environment).run_host
    target = rt.target_for(environment)
    found: dict[str, str] = {}
    for service in rt.loaded.config.services:
        hosts = target.hosts(rt.loaded.config.service_for(environment, service).roles)
        if hosts:
            found[service] = chosen if chosen in hosts else hosts[0]
    return found


def _verifications(steps: list[Step]) -> list[Step]:
    """A digest check of every release the plan starts instances of, before anything else
    (its migration runs in its directory too)."""
    started = {(s.service, s.release) for s in steps if isinstance(s, StartInstances)}
    return [VerifyRelease(service, release=release) for service, release in sorted(started)]


def with_steps(proposal: Proposal, *extra: Step) -> Proposal:
    """`proposal` with `extra` steps at the end of its plan."""
    plan = Plan(proposal.plan.environment, (*proposal.plan.steps, *extra))
    return dataclasses.replace(proposal, plan=plan)


def _release_phase(
    rt: Runtime,
    current: dict[str, str],
    target: dict[str, str],
    strategy: str,
    allowed_by: str,
) -> list[Step]:
    config = rt.loaded.config
    migrations = [
        Migration(
            service=name,
            release=target[name],
            previous=current.get(name),
            database=service.migrate.database,
            backup_first=config.databases[service.migrate.database].backup.before_migrate,
            ask_pending=asks_pending(service.migrate),
        )
        for name, service in config.services.items()
        if service.migrate is not None and name in target and current.get(name) != target[name]
    ]
    # An immediate deploy never runs old and new code side by side: only warn.
    return plan_release_phase(migrations, warn_only=strategy == "immediate", allowed_by=allowed_by)


async def propose_revert(rt: Runtime, deployment: DeploymentRecord) -> list[Step]:
    """Steps that bring every service back to what ran before `deployment`.

    After a blue_green or canary deployment this is one weight flip back to
    the stable instances, which still run; the new ones stop after
    `abort_scale_down_delay`.
    """
    config = rt.loaded.config
    env = deployment.environment
    chosen = progressive(rt, env)
    flip = chosen is not None or deployment.strategy in ("blue_green", "canary", "flip")
    delay = chosen.abort_scale_down_delay if chosen is not None else 0.0
    steps: list[Step] = []
    tag = secrets.token_hex(2) + "r"
    for service in ordered_services(config):
        release = deployment.previous.get(service)
        observed = await observe(rt, env, service, deployment=deployment)
        if release is None and not observed:
            continue
        svc = config.service_for(env, service)
        goal = ServiceGoal(
            service,
            release,
            svc.replicas if release else 0,
            observed,
            name_prefix=f"{env}-{service}-{tag}",
            hosts=rt.target_for(env).hosts(svc.roles),
        )
        steps.extend(_service_steps(rt, env, goal, phase=REVERT, flip=flip, scale_down_delay=delay))
    if isinstance(chosen, BlueGreenStrategy) and chosen.preview is not None and steps:
        steps.append(Preview(steps[0].service, REVERT, instances=()))
    steps = with_shipping(steps, rt.target_for(env).ships_releases)
    return [*_restores_after_failed_migrations(rt, deployment), *steps]


def _restores_after_failed_migrations(
    rt: Runtime, deployment: DeploymentRecord
) -> list[RestoreDatabase]:
    """Restore the backup of each database whose migration failed (or was interrupted) in
    `deployment`, where `migrate.on_failure` says so and no restore of it ran yet."""
    journal = {s.index: s.status for s in rt.store.list_steps(deployment.id)}
    plan = steps_from_json(deployment.plan)
    restored = {
        s.database
        for i, s in enumerate(plan, start=1)
        if isinstance(s, RestoreDatabase) and journal.get(i) in STEP_COMPLETE
    }
    restores: list[RestoreDatabase] = []
    for index, step in enumerate(plan, start=1):
        if not isinstance(step, Migrate) or journal.get(index) in (None, *STEP_COMPLETE):
            continue  # never started, or done: the database stays as it is
        migrate = rt.loaded.config.service_for(deployment.environment, step.service).migrate
        wanted = migrate is not None and migrate.on_failure == "restore"
        if wanted and step.database not in restored:
            restores.append(RestoreDatabase(step.service, REVERT, database=step.database))
            restored.add(step.database)
    return restores


async def propose_full_promotion(rt: Runtime, deployment: DeploymentRecord) -> list[Step]:
    """Steps that finish `deployment` at once: all traffic to the new releases now."""
    config = rt.loaded.config
    env = deployment.environment
    strategy = progressive(rt, env)
    window = strategy.rollback_window if strategy is not None else 0.0
    current = rt.store.current_releases(env)
    steps: list[Step] = []
    tag = secrets.token_hex(2) + "p"
    for service in ordered_services(config):
        release = deployment.releases.get(service)
        if release is None or current.get(service) == release:
            continue  # this service is promoted already
        observed = await observe(rt, env, service, deployment=deployment)
        svc = config.service_for(env, service)
        goal = ServiceGoal(
            service,
            release,
            svc.replicas,
            observed,
            name_prefix=f"{env}-{service}-{tag}",
            hosts=rt.target_for(env).hosts(svc.roles),
        )
        steps.extend(_service_steps(rt, env, goal, phase=FORWARD, flip=True, keep_warm=window))
    return with_shipping(steps, rt.target_for(env).ships_releases)


def _service_steps(
    rt: Runtime,
    environment: str,
    goal: ServiceGoal,
    *,
    phase: str,
    flip: bool = False,
    keep_warm: float = 0.0,
    scale_down_delay: float = 0.0,
    smoke: list[dict[str, object]] | None = None,
) -> list[Step]:
    """The steps of one service by its own strategy (`strategies.choice`): with `flip`
    (rollbacks, aborts and full promotions of blue_green and canary), a service whose
    strategy is progressive flips its traffic between warm instances; any other (workers,
    singletons, a service's own rolling) is planned by its strategy. A worker's plan has no
    weights and no drain."""
    config = rt.loaded.config
    chosen = service_strategy(config, environment, goal.service)
    if flip and chosen.type in PROGRESSIVE:
        flipped = plan_flip(
            goal, keep_warm=keep_warm, scale_down_delay=scale_down_delay, phase=phase
        )
        return with_smoke_tests(place(flipped, goal), goal.release, smoke or ())
    steps = plan_service(chosen, goal, analyses=config.analysis, phase=phase, smoke=smoke or ())
    return steps if config.services[goal.service].route is not None else without_traffic(steps)


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
    overrides: Overrides | None = None,
    deployment_id: str | None = None,
) -> DeploymentRecord:
    """Run a proposal; on failure restore the previous releases automatically.

    A deploy (not a rollback: that is how you get out of trouble) must meet the
    environment's policies first; `overrides` lets named ones through, recorded.
    `deployment_id`: the id to record it under (`conveyor server` answers with it
    before the deploy ends); a new one by default.
    """
    env = proposal.environment
    check_unfinished(rt, env)
    environment_tls(rt.loaded, env)  # files missing or unsafe: refused before anything starts
    try:
        overridden = enforce(rt, proposal, overrides or Overrides()) if kind == "deploy" else []
    except PolicyRefusedError as refusal:
        await _record_refusal(rt, proposal, kind, reason, refusal.message, progress, deployment_id)
        raise
    if overridden:
        reason = "; ".join([*([reason] if reason else []), *overridden])
    proposal = _resolved(rt, proposal)
    deployment = _new_record(rt, proposal, kind, reason, deployment_id)
    if kind == "deploy":  # a rollback is the way out of trouble: never refused for space
        ensure_room(rt, f"a deployment of {env}")
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
        for override in overridden:
            rt.store.add_event(
                "override", f"{deployment.id}: {override} by {rt.user}", env, deployment.id
            )
        rt.notifications.publish("started", deployment)
        await rt.ensure_platform(env)
        await _ensure_routes(rt, env)
        return await _run_forward(rt, deployment, proposal.plan.steps, 1, progress)
    finally:
        unlock(rt, env, deployment.id)
        await rt.notifications.drain()


def _resolved(rt: Runtime, proposal: Proposal) -> Proposal:
    """The proposal with each instance step's service settings resolved (`engine.settings`)."""
    steps = with_settings(rt.loaded.config, proposal.environment, proposal.plan.steps)
    return dataclasses.replace(proposal, plan=Plan(proposal.environment, tuple(steps)))


def _new_record(
    rt: Runtime, proposal: Proposal, kind: str, reason: str | None, deployment_id: str | None
) -> DeploymentRecord:
    return DeploymentRecord(
        id=deployment_id or new_deployment_id(),
        environment=proposal.environment,
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


async def _record_refusal(
    rt: Runtime,
    proposal: Proposal,
    kind: str,
    reason: str | None,
    error: str,
    progress: Progress,
    deployment_id: str | None,
) -> None:
    """A deploy the environment's policies refused: in the history as `refused`, with why
    (nothing ran, so its plan has no journal)."""
    deployment = _new_record(rt, proposal, kind, reason, deployment_id)
    rt.store.create_deployment(deployment)
    try:
        await _refuse(rt, deployment, error, progress)
    finally:
        await rt.notifications.drain()


async def resume(rt: Runtime, environment: str, progress: Progress = _quiet) -> DeploymentRecord:
    """Finish an interrupted or paused deployment.

    Moving forward, it runs the plan from the first step not journaled as
    done (each step is idempotent; a paused step runs again). Interrupted
    while restoring the previous releases, it plans that restoration again
    from what runs now: the planner converges from any state, whatever the
    journal says.
    """
    deployment = _take_over(rt, environment)
    try:
        await rt.ensure_platform(environment)
        await _ensure_routes(rt, environment)
        if deployment.status not in (RUNNING, PAUSED, AWAITING_APPROVAL):
            final = ABORTED if deployment.status == ABORTING else ROLLED_BACK
            progress(f"resuming the restoration of the releases before {deployment.id}")
            reason = deployment.error or f"{deployment.id} was interrupted"
            return await _revert(rt, deployment, final, reason, progress)
        return await _continue(rt, deployment, progress)
    finally:
        unlock(rt, environment, deployment.id)
        await rt.notifications.drain()


async def promote(
    rt: Runtime, environment: str, *, full: bool = False, progress: Progress = _quiet
) -> DeploymentRecord:
    """End the current pause or analysis (`full`: every remaining step) and go on.

    When the deployment runs in another process, that process is asked to
    do it and this returns once it took the request; a paused deployment
    continues in this process.
    """
    request = REQUEST_PROMOTE_FULL if full else REQUEST_PROMOTE
    asked = _unfinished(rt, environment)  # it may finish as soon as it took the request
    if await _ask_running(rt, environment, request):
        return _reload(rt, asked.id)
    deployment = _take_over(rt, environment)
    try:
        await rt.ensure_platform(environment)
        await _ensure_routes(rt, environment)
        if deployment.status not in (RUNNING, PAUSED, AWAITING_APPROVAL):
            raise UsageError(
                f"deployment {deployment.id} is restoring the previous releases: "
                "nothing to promote",
                hint=f'finish that with "conveyor resume {environment}"',
            )
        rt.store.update_deployment(deployment.id, status=RUNNING)
        who = rt.user
        if full:
            rt.store.add_event(
                "promote", f"{deployment.id} fully promoted by {who}", environment, deployment.id
            )
            return await _promote_full(rt, deployment, _first_incomplete(rt, deployment), progress)
        first = _first_incomplete(rt, deployment)
        steps = steps_from_json(deployment.plan)
        if first <= len(steps) and isinstance(steps[first - 1], Pause | Analyze | Verify):
            step = steps[first - 1]
            if not isinstance(step, StartAnalysis):
                rt.store.step_started(deployment.id, first, step.kind, step.describe())
                rt.store.step_finished(
                    deployment.id, first, STEP_SKIPPED, f"promoted by {who}: step skipped"
                )
                progress(f"[{step.service}] {step.describe()}: promoted by {who}")
        rt.store.add_event(
            "promote", f"{deployment.id} promoted by {who}", environment, deployment.id
        )
        return await _continue(rt, deployment, progress)
    finally:
        unlock(rt, environment, deployment.id)
        await rt.notifications.drain()


async def pause(rt: Runtime, environment: str) -> DeploymentRecord:
    """Ask the running deployment of `environment` to pause at once."""
    deployment = _unfinished(rt, environment)
    if deployment.status == PAUSED:
        raise UsageError(
            f"deployment {deployment.id} is paused already", hint=next_commands(deployment)
        )
    if not await _ask_running(rt, environment, REQUEST_PAUSE, until=(PAUSED,)):
        raise UsageError(
            f"deployment {deployment.id} of {environment} is not running (it was interrupted)",
            hint=next_commands(deployment),
        )
    rt.store.add_event("pause", f"{deployment.id} paused by {rt.user}", environment, deployment.id)
    return _reload(rt, deployment.id)


async def abort(
    rt: Runtime, environment: str, reason: str | None = None, progress: Progress = _quiet
) -> DeploymentRecord:
    """Stop an unfinished deployment and restore the releases that ran before it.

    A deployment running in another process is asked to abort (it flips the
    traffic back within its next poll) and this waits until it finished.
    """
    why = reason or f"aborted by {rt.user}"
    deployment = _unfinished(rt, environment)
    if deployment.status in (RUNNING, PAUSED, AWAITING_APPROVAL) and await _ask_running(
        rt, environment, REQUEST_ABORT, until=(ABORTED, FAILED, ROLLED_BACK, SUCCEEDED), why=why
    ):
        return _reload(rt, deployment.id)
    deployment = _take_over(rt, environment)
    try:
        await rt.ensure_platform(environment)
        await _ensure_routes(rt, environment)
        rt.store.update_deployment(deployment.id, status=ABORTING, error=why)
        rt.store.add_event(
            "abort", f"{deployment.id} aborted by {rt.user}: {why}", environment, deployment.id
        )
        return await _revert(rt, deployment, ABORTED, why, progress)
    finally:
        unlock(rt, environment, deployment.id)
        await rt.notifications.drain()


async def finish_rejected(
    rt: Runtime, environment: str, progress: Progress = _quiet
) -> DeploymentRecord:
    """End a rejected (or expired) deployment whose process is gone: nothing had changed."""
    deployment = _take_over(rt, environment)
    try:
        from conveyor.engine.approvals import state_of

        reason = f"deployment {deployment.id} was {state_of(rt, deployment).summary}"
        rt.store.update_deployment(deployment.id, status=ABORTING, error=reason)
        return await _revert(rt, deployment, REJECTED, reason, progress)
    finally:
        unlock(rt, environment, deployment.id)
        await rt.notifications.drain()


async def down(
    rt: Runtime, environment: str, progress: Progress = _quiet, reason: str = "conveyor down"
) -> DeploymentRecord | None:
    """Drain and stop every instance of the environment, then stop routing to it."""
    check_unfinished(rt, environment)
    await rt.ensure_platform(environment)
    steps: list[Step] = []
    current = rt.store.current_releases(environment)
    config = rt.loaded.config
    for service in reversed(ordered_services(config)):  # workers stop before what they use
        observed = await observe(rt, environment, service)
        if observed or current.get(service):
            goal = ServiceGoal(service, None, 0, observed, hosts=rt.target_for(environment).hosts())
            steps.extend(
                plan_service("immediate", goal)
                if config.services[service].route is not None
                else without_traffic(plan_service("immediate", goal))
            )
    if not steps:
        await rt.router_for(environment).remove_environment(environment)
        await _check_closed(rt, environment)
        _stop_agent(rt, environment, progress)
        return None
    proposal = Proposal(environment, "immediate", {}, current, Plan(environment, tuple(steps)))
    record = await deploy(rt, proposal, kind="down", reason=reason, progress=progress)
    await rt.router_for(environment).remove_environment(environment)
    await _check_closed(rt, environment)
    _stop_agent(rt, environment, progress)
    return record


def _stop_agent(rt: Runtime, environment: str, progress: Progress) -> None:
    from conveyor.agent import program

    program.stop(rt, environment, progress)


CLOSE_TIMEOUT = 5.0  # seconds the router gets to close the listen address of a stopped one


async def _check_closed(rt: Runtime, environment: str) -> None:
    """Raise unless the environment's listen address stopped accepting connections."""
    from conveyor.engine.serving import wait_closed

    listen = rt.environment(environment).listen
    left = await wait_closed(listen, CLOSE_TIMEOUT)
    if left:
        named = ", ".join(str(h) for h in left)
        raise DeployError(
            f"every instance of {environment} is stopped, but {listen} still accepts "
            f"connections ({named}): it is not down",
            hint="stop that process (it is not Conveyor's router), then run "
            f"`conveyor down {environment}` again",
        )


# -- internals ---------------------------------------------------------------------------


async def _run_forward(
    rt: Runtime,
    deployment: DeploymentRecord,
    steps: list[Step] | tuple[Step, ...],
    first: int,
    progress: Progress,
    background: tuple[StartAnalysis, int] | None = None,
) -> DeploymentRecord:
    env = deployment.environment
    executor = Executor(rt, env, deployment.id, progress)
    if background is not None:
        executor.start_background(*background)
    try:
        await executor.run(steps, first)
    except StepFailed as failure:
        if refuses(steps_from_json(_reload(rt, deployment.id).plan), failure.index):
            await _refuse(rt, deployment, failure.message, progress)
            raise DeployError(
                f"deployment {deployment.id} of {env} was refused: {failure.message}",
                hint=failure.hint or f"nothing was changed; see: conveyor explain {deployment.id}",
            ) from None
        reason = failure.message
        if isinstance(failure.cause, HostUnreachableError):
            await take_traffic_from(rt, env, failure.cause.host, progress)
        analysis = isinstance(failure.cause, AnalysisFailedError)
        status, final = (ABORTING, ABORTED) if analysis else (ROLLING_BACK, ROLLED_BACK)
        if isinstance(failure.cause, ApprovalRejectedError):
            status, final, reason = ABORTING, REJECTED, failure.cause.message
        if isinstance(failure.cause, VerifyFailedError):  # it names its step's check itself
            reason = failure.cause.message
        rt.store.update_deployment(deployment.id, status=status, error=reason)
        rt.store.add_event("failed", f"{deployment.id}: {reason}", env, deployment.id)
        if isinstance(failure.cause, VerifyFailedError):
            rt.notifications.publish("verify_failed", _reload(rt, deployment.id))
        # The detail is printed once, in the error that ends the command.
        progress(
            f"step {failure.index} ({failure.step.describe()}) failed: "
            "restoring the previous releases"
        )
        await _revert(rt, deployment, final, reason, progress)
        what = "was aborted" if analysis else "failed and was rolled back"
        if final == REJECTED:
            raise DeployError(reason, hint=failure.cause.hint) from None
        raise DeployError(
            f"deployment {deployment.id} of {env} {what}: {reason}",
            hint=failure.hint or f"the previous releases still serve; see: conveyor history {env}",
        ) from None
    except Paused as paused:
        rt.store.update_deployment(deployment.id, status=PAUSED)
        rt.store.add_event("paused", f"{deployment.id} {paused.message}", env, deployment.id)
        progress(f"{paused.message}; {next_commands(_reload(rt, deployment.id))}")
        return _reload(rt, deployment.id)
    except AbortRequested as aborted:
        why = _reload(rt, deployment.id).error or aborted.message
        rt.store.update_deployment(deployment.id, status=ABORTING, error=why)
        rt.store.set_request(deployment.id, None)
        rt.store.add_event("abort", f"{deployment.id} {aborted.message}: {why}", env, deployment.id)
        progress(f"{aborted.message}: restoring the previous releases")
        return await _revert(rt, deployment, ABORTED, why, progress)
    except PromoteFull as promoted:
        rt.store.add_event("promote", f"{deployment.id} {promoted.message}", env, deployment.id)
        progress(f"{promoted.message}: promoting now")
        return await _promote_full(rt, deployment, _first_incomplete(rt, deployment), progress)
    rt.store.update_deployment(deployment.id, status=SUCCEEDED, finished=True)
    rt.store.add_event("succeeded", f"{deployment.id} succeeded", env, deployment.id)
    done = _reload(rt, deployment.id)
    rt.notifications.publish("succeeded", done)
    await _after_hooks(
        rt, done, "on_rollback" if done.kind == "rollback" else "post_deploy", progress
    )
    _prune_releases(rt, progress)
    if done.kind != "down":
        sync_agent(rt, env, progress)
    return done


def sync_agent(rt: Runtime, environment: str, progress: Progress) -> None:
    """Start, replace or stop the environment's agent (its scheduled jobs) to match the
    config just deployed; a failure is a warning, the deployment stays succeeded."""
    from conveyor.agent import program

    try:
        program.sync(rt, environment, progress)
    except ConveyorError as error:
        progress(f"warning: the agent of {environment} (scheduled jobs): {error.message}")


async def _refuse(
    rt: Runtime, deployment: DeploymentRecord, reason: str, progress: Progress
) -> DeploymentRecord:
    """End `deployment` as refused by a check (nothing changed): recorded with the reason,
    announced, and the on_failure hooks run."""
    rt.store.update_deployment(deployment.id, status=REFUSED, error=reason, finished=True)
    rt.store.add_event(
        REFUSED, f"{deployment.id} refused: {reason}", deployment.environment, deployment.id
    )
    refused = _reload(rt, deployment.id)
    rt.notifications.publish(REFUSED, refused)
    await _after_hooks(rt, refused, "on_failure", progress)
    return refused


def _prune_releases(rt: Runtime, progress: Progress) -> None:
    """Apply `releases.keep` after a successful deployment (the rules of `conveyor prune`)."""
    from conveyor.releases.prune import plan_prune, prune_releases

    doomed = plan_prune(rt, rt.loaded.config.releases.keep)
    if doomed:
        pruned = prune_releases(rt, doomed)
        if pruned.deleted:
            count = len(pruned.deleted)
            names = ", ".join(f"{r.service} {r.id}" for r in pruned.deleted)
            progress(f"pruned {count} old release{'s' * (count != 1)}: {names}")
        for key in pruned.dependencies:
            progress(f"deleted the stored dependencies {key[:12]} (no release uses them)")
        if note := pruned.busy_note():
            progress(note)


async def _continue(
    rt: Runtime, deployment: DeploymentRecord, progress: Progress
) -> DeploymentRecord:
    """Run the plan on from its first incomplete step, background analysis included."""
    rt.store.update_deployment(deployment.id, status=RUNNING)
    # A plan journaled before steps carried settings gets them now (see engine.settings).
    steps = with_settings(
        rt.loaded.config, deployment.environment, steps_from_json(deployment.plan)
    )
    first = _first_incomplete(rt, deployment)
    progress(f"continuing {deployment.id} at step {first}/{len(steps)}")
    return await _run_forward(
        rt, deployment, steps[first - 1 :], first, progress, _open_background(steps, first)
    )


async def _promote_full(
    rt: Runtime, deployment: DeploymentRecord, first: int, progress: Progress
) -> DeploymentRecord:
    """Replace the steps from `first` on by an immediate promotion, and run it. A check
    after traffic (`Verify`) still to come follows the promotion; one under way ends."""
    steps = with_settings(
        rt.loaded.config, deployment.environment, await propose_full_promotion(rt, deployment)
    )
    current = _reload(rt, deployment.id)
    later = steps_from_json(current.plan[first:])
    steps.extend(s for s in later if isinstance(s, Verify) and s.phase == FORWARD)
    for index in range(first, len(current.plan) + 1):
        step = steps_from_json([current.plan[index - 1]])[0]
        rt.store.step_started(deployment.id, index, step.kind, step.describe())
        rt.store.step_finished(deployment.id, index, STEP_SKIPPED, "skipped: promote --full")
    start = len(current.plan) + 1
    rt.store.update_deployment(
        deployment.id, status=RUNNING, plan=[*current.plan, *steps_to_json(steps)]
    )
    return await _run_forward(rt, deployment, steps, start, progress)


def _first_incomplete(rt: Runtime, deployment: DeploymentRecord) -> int:
    journal = {s.index: s.status for s in rt.store.list_steps(deployment.id)}
    total = len(deployment.plan)
    return next((i for i in range(1, total + 1) if journal.get(i) not in STEP_COMPLETE), total + 1)


def _open_background(steps: list[Step], first: int) -> tuple[StartAnalysis, int] | None:
    """The background analysis started before step `first` and not yet stopped."""
    open_at: tuple[StartAnalysis, int] | None = None
    for index, step in enumerate(steps[: first - 1], start=1):
        if isinstance(step, StartAnalysis):
            open_at = (step, index)
        elif isinstance(step, StopAnalysis):
            open_at = None
    return open_at


def _unfinished(rt: Runtime, environment: str) -> DeploymentRecord:
    rt.environment(environment)
    deployment = rt.store.unfinished_deployment(environment)
    if deployment is None:
        raise UsageError(
            f"{environment} has no unfinished deployment",
            hint=f"see what happened with: conveyor history {environment}",
        )
    return deployment


REQUEST_TIMEOUT_S = 30.0  # how long a request waits for the running process to take it


async def _ask_running(
    rt: Runtime,
    environment: str,
    request: str,
    *,
    until: tuple[str, ...] = (),
    why: str | None = None,
) -> bool:
    """Send `request` to the process running the deployment; False if none runs it.

    Waits until the process took the request (cleared it), or, with `until`,
    until the deployment reached one of those statuses.
    """
    deployment = _unfinished(rt, environment)
    lock = rt.store.get_lock(environment)
    if lock is None or lock.deployment_id != deployment.id or not process_alive(lock):
        return False
    if why is not None:
        rt.store.update_deployment(deployment.id, error=why)
    if not rt.store.set_request(deployment.id, request, rt.user):
        return False
    deadline = time.monotonic() + (REQUEST_TIMEOUT_S if not until else 600.0)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        current = _reload(rt, deployment.id)
        if until and current.status in until:
            return True
        if not until and current.request is None:
            return True
        lock = rt.store.get_lock(environment)
        if lock is None or lock.deployment_id != deployment.id or not process_alive(lock):
            if until and current.status in until:
                return True
            rt.store.set_request(deployment.id, None)
            return False  # it died: the caller takes over
    raise LockHeldError(
        f"the process running {deployment.id} (pid {lock.pid}) did not take the {request} request",
        hint="it may be stuck in a long step; try again, or stop that process and run the "
        "command again",
    )


async def _revert(
    rt: Runtime, deployment: DeploymentRecord, final: str, reason: str, progress: Progress
) -> DeploymentRecord:
    known = len(rt.notes)
    try:
        await rt.recheck_platform(deployment.environment)
    except HostUnreachableError as error:  # e.g. the router's host: nothing can move now
        environment = deployment.environment
        raise DeployError(
            f"{reason}; deployment {deployment.id} stopped before restoring the previous "
            f"releases: {error.message}",
            hint=f"once host {error.host} answers again (`conveyor hosts {environment}`), "
            f"run `conveyor resume {environment}` to finish restoring them",
        ) from None
    for note in rt.notes[known:]:  # e.g. supervisord had died: likely why the step failed
        progress(f"note: {note}")
    del rt.notes[known:]
    steps = with_settings(
        rt.loaded.config, deployment.environment, await propose_revert(rt, deployment)
    )
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
        failed = _reload(rt, deployment.id)
        rt.notifications.publish("failed", failed)
        await _after_hooks(rt, failed, "on_failure", progress)
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
    ended = _reload(rt, deployment.id)
    rt.notifications.publish(final, ended)
    await _after_hooks(rt, ended, "on_failure", progress)
    if final in (ROLLED_BACK, ABORTED):
        await _after_hooks(rt, ended, "on_rollback", progress)
    return ended


async def _after_hooks(
    rt: Runtime, deployment: DeploymentRecord, which: str, progress: Progress
) -> None:
    """Run hooks after a deployment ended; their failures are reported, never fatal."""
    from conveyor.engine.hooks import run_hooks

    if deployment.kind == "down" or (which == "on_failure" and deployment.kind != "deploy"):
        return
    for failure in await run_hooks(rt, which, deployment, progress):
        progress(f"warning: {failure}")
        rt.store.add_event("hook_failed", failure, deployment.environment, deployment.id)


def _take_over(rt: Runtime, environment: str) -> DeploymentRecord:
    """Claim an interrupted deployment's lock for this process."""
    deployment = _unfinished(rt, environment)
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


@contextlib.contextmanager
def lock_environment(rt: Runtime, environment: str, message: str) -> Iterator[None]:
    """Hold the environment's lock (no deployment) while an operation such as a database
    restore runs; deploys meanwhile are refused with `message`."""
    rt.store.acquire_lock(
        LockRecord(
            environment=environment,
            holder=rt.user,
            acquired_at=datetime.now(UTC),
            message=message,
            pid=os.getpid(),
            hostname=socket.gethostname(),
        )
    )
    try:
        yield
    finally:
        rt.store.release_lock(environment)


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


async def refresh_routes(rt: Runtime, environment: str) -> None:
    """With `tls:` or `server:`, have the router load the certificate files again when
    their content changed and route to `conveyor server` (a deploy with nothing else to
    do is how a renewed certificate is put in service)."""
    env = rt.environment(environment)
    if env.tls is not None or env.server is not None:
        await _ensure_routes(rt, environment)


async def _ensure_routes(rt: Runtime, environment: str) -> None:
    from conveyor.routers.base import SERVER_ROUTE, RouteSpec, route_specs

    env_config = rt.environment(environment)
    routes = route_specs(rt.loaded.config.services)
    exposed = env_config.server
    if exposed is not None:
        routes.append(RouteSpec(SERVER_ROUTE, host=exposed.host))
    tls = environment_tls(rt.loaded, environment)
    router = rt.router_for(environment)
    await router.ensure_environment(environment, env_config.listen, routes, tls=tls)
    if exposed is not None:
        await router.register(environment, SERVER_ROUTE, exposed.address)
        weights = await router.weights(environment, SERVER_ROUTE)
        if weights != {exposed.address: 1}:
            await router.set_weights(environment, SERVER_ROUTE, {exposed.address: 1})
            for address in set(weights) - {exposed.address}:  # `address:` was changed
                await router.remove(environment, SERVER_ROUTE, address)


def _reload(rt: Runtime, deployment_id: str) -> DeploymentRecord:
    record = rt.store.get_deployment(deployment_id)
    if record is None:  # pragma: no cover - we just wrote it
        raise ConveyorError(f"deployment {deployment_id} vanished from the state store")
    return record
