"""`conveyor deploy`, `rollback`, `promote`, `pause`, `resume`, `abort` and `down`."""

from __future__ import annotations

from typing import Any

import typer

from conveyor.cli.context import STATE, JsonOption, YesOption, run, runtime
from conveyor.cli.output import confirm, emit_json, iso, progress, say, warn
from conveyor.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command()(deploy)
    app.command()(rollback)
    app.command()(promote)
    app.command()(approve)
    app.command()(reject)
    app.command()(pause)
    app.command()(resume)
    app.command()(abort)
    app.command()(down)
    app.command("expire-warm", hidden=True)(expire_warm)


def deploy(
    environment: str = typer.Argument(..., help="Environment to deploy to."),
    release: list[str] | None = typer.Option(
        None, "--release", "-r", help="SERVICE=RELEASE to deploy (repeatable; default: newest)."
    ),
    build: bool = typer.Option(False, "--build", help="Build the releases first."),
    dirty: bool = typer.Option(False, "--dirty", help="With --build: include uncommitted changes."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    reason: str | None = typer.Option(None, "--message", "-m", help="Why (kept in history)."),
    allow_breaking: bool = typer.Option(
        False,
        "--allow-breaking-migrations",
        help="Run migrations that break the release still serving (recorded in the journal).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Deploy releases the pipeline did not pass (recorded)."
    ),
    override_window: bool = typer.Option(
        False, "--override-window", help="Deploy outside the deploy windows (recorded)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Deploy the newest (or given) releases to ENVIRONMENT, health-gated, zero downtime."""
    if STATE.server:
        from conveyor.remote import commands

        local_only = {
            "--build": build,
            "--dirty": dirty,
            "--dry-run": dry_run,
            "--allow-breaking-migrations": allow_breaking,
            "--force": force,
            "--override-window": override_window,
        }
        commands.refuse_options("deploy", local_only)
        commands.deploy(environment, parse_release_args(release or []), reason, as_json)
        return
    from conveyor.engine import deployments
    from conveyor.engine.policies import Overrides
    from conveyor.releases.builder import build_service

    rt = runtime()
    rt.environment(environment)
    if not dry_run:  # refused before anything changes when a secret is missing
        rt.secrets(environment)
    wanted = parse_release_args(release or [])
    if build:
        for name in rt.loaded.config.services:
            if name in wanted:
                continue
            result = build_service(
                rt.loaded, rt.paths, rt.store, name, user=rt.user, dirty=dirty, log=progress
            )
            if result.warning:
                warn(result.warning)
            wanted[name] = result.release.id
    # Resolved before anything starts, so that a usage error leaves nothing running.
    target = {**newest(rt, skip=set(wanted)), **wanted}

    allowed_by = rt.user if allow_breaking else ""

    async def go() -> Any:
        if dry_run:
            return await deployments.propose(
                rt, environment, target, observe_live=False, migrate=True, allowed_by=allowed_by
            )
        deployments.check_unfinished(rt, environment)
        await rt.ensure_platform(environment)
        proposal = await deployments.propose(
            rt, environment, target, migrate=True, allowed_by=allowed_by
        )
        if not proposal.plan.steps:  # the releases run already; the jobs may have changed
            deployments.sync_agent(rt, environment, progress if not as_json else _silent)
            await deployments.refresh_routes(rt, environment)  # and the certificate
            return proposal
        return await deployments.deploy(
            rt,
            proposal,
            reason=reason,
            progress=progress if not as_json else _silent,
            overrides=Overrides(pipeline=force, window=override_window),
        )

    outcome = run(go())
    show_notes(rt)
    if isinstance(outcome, deployments.Proposal):
        show_proposal(outcome, as_json, dry_run)
        return
    show_deployment(outcome, as_json, rt.environment(environment).effective_url)
    exit_for(rt, outcome)


def rollback(
    environment: str = typer.Argument(..., help="Environment to roll back."),
    to: list[str] | None = typer.Option(
        None,
        "--to",
        help="RELEASE or SERVICE=RELEASE to go back to (default: the previous "
        "successful release set).",
    ),
    reason: str | None = typer.Option(None, "--message", "-m", help="Why (kept in history)."),
    restore_db: str | None = typer.Option(
        None,
        "--restore-db",
        help="After the traffic is back, also restore this database backup (asks first; a "
        "backup of the current state is taken before).",
    ),
    yes: bool = YesOption,
    as_json: bool = JsonOption,
) -> None:
    """Redeploy the previous successful release set (health-gated, zero downtime).

    The databases stay as they are unless --restore-db names a backup."""
    if STATE.server:
        from conveyor.remote import commands

        commands.refuse_options("rollback", {"--restore-db": restore_db is not None})
        commands.rollback(environment, to or [], reason, as_json)
        return
    from conveyor.engine import deployments
    from conveyor.engine.rollback import rollback_target

    rt = runtime()
    rt.environment(environment)
    rt.secrets(environment)
    target = rollback_target(rt, environment, to or [])
    restore = _restore_step(rt, environment, restore_db, yes) if restore_db else None

    async def go() -> Any:
        deployments.check_unfinished(rt, environment)
        await rt.ensure_platform(environment)
        flip = deployments.progressive(rt, environment) is not None
        proposal = await deployments.propose(rt, environment, target, flip=flip)
        if restore is not None:
            proposal = deployments.with_steps(proposal, restore)
        if not proposal.plan.steps:
            return proposal
        return await deployments.deploy(
            rt,
            proposal,
            kind="rollback",
            reason=reason,
            progress=progress if not as_json else _silent,
        )

    outcome = run(go())
    show_notes(rt)
    if isinstance(outcome, deployments.Proposal):
        show_proposal(outcome, as_json, dry_run=False)
        return
    show_deployment(outcome, as_json, rt.environment(environment).effective_url)


def promote(
    environment: str = typer.Argument(
        ..., help="Environment with a rollout in progress; or, with TARGET, the source."
    ),
    target: str | None = typer.Argument(
        None, help="Deploy the releases running in ENVIRONMENT to this environment."
    ),
    full: bool = typer.Option(
        False, "--full", help="Skip every remaining step: all traffic to the new release now."
    ),
    service: list[str] | None = typer.Option(
        None, "--service", "-s", help="With TARGET: only these services (repeatable)."
    ),
    reason: str | None = typer.Option(None, "--message", "-m", help="Why (kept in history)."),
    force: bool = typer.Option(
        False, "--force", help="With TARGET: past the pipeline gate (recorded)."
    ),
    override_window: bool = typer.Option(
        False, "--override-window", help="With TARGET: outside its deploy windows (recorded)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """End the current pause or analysis of a rollout and go on (--full: promote now).

    `conveyor promote staging production` deploys to production exactly the releases
    (same ids, same digests) that run on staging, with production's strategy and policies.
    """
    if STATE.server:
        from conveyor.remote import commands

        local_only = {
            "TARGET (promote SOURCE TARGET)": target is not None,
            "--service": bool(service),
            "--force": force,
            "--override-window": override_window,
        }
        commands.refuse_options("promote", local_only)
        commands.promote(environment, full, as_json)
        return
    from conveyor.engine import deployments
    from conveyor.engine.policies import Overrides

    rt = runtime()
    if target is None:
        rt.environment(environment)
        rt.secrets(environment)  # the rollout may go on in this process, starting instances
        record = run(
            deployments.promote(
                rt, environment, full=full, progress=progress if not as_json else _silent
            )
        )
        show_notes(rt)
        show_deployment(record, as_json, rt.environment(environment).effective_url)
        exit_if_waiting(rt, record)
        return
    rt.environment(environment)
    rt.environment(target)
    rt.secrets(target)
    running = rt.store.current_releases(environment)
    wanted = {s: r for s, r in running.items() if not service or s in service}
    unknown = sorted(set(service or ()) - set(running))
    if unknown or not wanted:
        raise UsageError(
            f"{environment} runs no release of {', '.join(unknown) or 'any service'}",
            hint=f"deploy to {environment} first: conveyor deploy {environment}",
        )

    async def go() -> Any:
        deployments.check_unfinished(rt, target)
        await rt.ensure_platform(target)
        proposal = await deployments.propose(rt, target, wanted, migrate=True)
        if not proposal.plan.steps:
            return proposal
        why = f"promoted from {environment}" + (f": {reason}" if reason else "")
        return await deployments.deploy(
            rt,
            proposal,
            reason=why,
            progress=progress if not as_json else _silent,
            overrides=Overrides(pipeline=force, window=override_window),
        )

    outcome = run(go())
    show_notes(rt)
    if isinstance(outcome, deployments.Proposal):
        show_proposal(outcome, as_json, dry_run=False)
        return
    show_deployment(outcome, as_json, rt.environment(target).effective_url)
    exit_for(rt, outcome)


def approve(
    deployment_id: str = typer.Argument(..., help="The deployment awaiting approval."),
    message: str = typer.Option("", "--message", "-m", help="Why (kept with it)."),
) -> None:
    """Approve a deployment that waits for approval; the waiting deploy goes on."""
    _decide(deployment_id, approve=True, message=message)


def reject(
    deployment_id: str = typer.Argument(..., help="The deployment awaiting approval."),
    message: str = typer.Option("", "--message", "-m", help="Why (kept with it)."),
) -> None:
    """Reject a deployment that waits for approval: it ends, nothing having changed."""
    _decide(deployment_id, approve=False, message=message)


def _decide(deployment_id: str, *, approve: bool, message: str) -> None:
    from conveyor.engine import approvals, deployments
    from conveyor.engine.unfinished import process_alive

    if STATE.server:
        from conveyor.remote import commands

        commands.decide(deployment_id, approve=approve, message=message)

        return
    rt = runtime()
    deployment, state = approvals.decide(rt, deployment_id, approve=approve, message=message)
    env = deployment.environment
    lock = rt.store.get_lock(env)
    waiting = lock is not None and lock.deployment_id == deployment_id and process_alive(lock)
    if not approve and not waiting:
        run(deployments.finish_rejected(rt, env, progress=progress))
    show_decision(deployment_id, env, state.summary, approve, state.approved, waiting)


def show_decision(
    deployment_id: str, env: str, summary: str, approve: bool, approved: bool, waiting: bool
) -> None:
    """What `approve` and `reject` print (here or through a server)."""
    if approve:
        after = "the waiting deploy goes on" if waiting else f'run "conveyor resume {env}" to go on'
        say(f"{deployment_id}: {summary}" + (f"; {after}" if approved else ""))
        return
    say(f"{deployment_id}: {summary}; it ends, nothing was changed")


def pause(
    environment: str = typer.Argument(..., help="Environment with a rollout in progress."),
    as_json: bool = JsonOption,
) -> None:
    """Pause the running rollout of ENVIRONMENT where it is (resume or promote it later)."""
    from conveyor.engine import deployments

    if STATE.server:
        from conveyor.remote import commands

        commands.pause(environment, as_json)

        return

    rt = runtime()
    record = run(deployments.pause(rt, environment))
    show_deployment(record, as_json, rt.environment(environment).effective_url)


def resume(
    environment: str = typer.Argument(
        ..., help="Environment with an interrupted or paused deployment."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Finish an interrupted deployment from where it stopped (a paused step runs again)."""
    from conveyor.engine import deployments

    if STATE.server:
        from conveyor.remote import commands

        commands.resume(environment, as_json)

        return

    rt = runtime()
    rt.environment(environment)
    rt.secrets(environment)
    record = run(deployments.resume(rt, environment, progress if not as_json else _silent))
    show_notes(rt)
    show_deployment(record, as_json, rt.environment(environment).effective_url)
    exit_if_waiting(rt, record)


def abort(
    environment: str = typer.Argument(..., help="Environment with an unfinished deployment."),
    reason: str | None = typer.Option(None, "--message", "-m", help="Why (kept in history)."),
    as_json: bool = JsonOption,
) -> None:
    """Roll an unfinished deployment back to the releases that ran before it."""
    from conveyor.engine import deployments

    if STATE.server:
        from conveyor.remote import commands

        commands.abort(environment, reason, as_json)

        return

    rt = runtime()
    rt.environment(environment)
    rt.secrets(environment)  # the releases it restores start with them
    record = run(deployments.abort(rt, environment, reason, progress if not as_json else _silent))
    show_notes(rt)
    show_deployment(record, as_json, rt.environment(environment).effective_url)


def down(
    environment: str = typer.Argument(..., help="Environment to stop."),
    yes: bool = YesOption,
    as_json: bool = JsonOption,
) -> None:
    """Stop every instance of ENVIRONMENT (drained first) and stop routing to it."""
    from conveyor.engine import deployments

    rt = runtime(defer_unset=True)  # stops, never starts: see Executor.spec_for
    rt.environment(environment)
    confirm(f"stop every instance of {environment}?", yes=yes)
    record = run(deployments.down(rt, environment, progress if not as_json else _silent))
    show_notes(rt)
    if as_json:
        emit_json(deployment_json(record) if record else None)
    else:
        say(f"{environment} is down" if record else f"{environment} has nothing running")


def expire_warm(
    environment: str = typer.Argument(..., help="Environment whose warm instances to watch."),
) -> None:
    """Stop warm instances when their rollback window ends (run by supervisord)."""
    from conveyor.engine import warm

    rt = runtime()
    rt.environment(environment)
    run(warm.watch(rt, environment))


# -- helpers --------------------------------------------------------------------------


def _silent(_: str) -> None:
    return None


def _restore_step(rt: Any, environment: str, backup_id: str, yes: bool) -> Any:
    """The step restoring `backup_id` at the end of a rollback, once confirmed."""
    from conveyor.cli.output import local_time
    from conveyor.engine.plan import RestoreDatabase

    record = rt.store.get_backup(backup_id)
    if record is None:
        raise UsageError(f'unknown backup "{backup_id}"', hint="list them with: conveyor db list")
    config = rt.loaded.config
    url = config.database_url(record.database, environment)  # a usage error when unknown
    from conveyor.redaction import redact_url

    confirm(
        f"Roll back {environment} and then replace everything in database {record.database} "
        f"({redact_url(url)}) with backup {record.id} of {local_time(record.created_at)}?",
        yes=yes,
    )
    owner = next(
        (
            n
            for n, s in config.services.items()
            if s.migrate and s.migrate.database == record.database
        ),
        next(iter(config.services)),
    )
    return RestoreDatabase(owner, database=record.database, backup=record.id)


NOT_LANDED = ("aborted", "rolled_back", "failed", "rejected", "refused")


def exit_for(rt: Any, record: Any) -> None:
    """Exit 1 when the releases did not land (aborted from another terminal too), 3 when
    the rollout waits for a person."""
    if record.status in NOT_LANDED:
        raise typer.Exit(1)
    exit_if_waiting(rt, record)


def exit_if_waiting(rt: Any, record: Any) -> None:
    """A paused rollout is not a success for a CI job: say why it waits and what to run,
    on stderr, and exit 3 (EXIT_WAITING)."""
    from conveyor.store.records import PAUSED, STEP_PAUSED

    if record.status != PAUSED:
        return
    pending = [s for s in rt.store.list_steps(record.id) if s.status == STEP_PAUSED]
    why = (pending[-1].error or pending[-1].description) if pending else "paused"
    exit_waiting(record.id, record.environment, why)


def exit_waiting(deployment_id: str, env: str, why: str) -> None:
    """Say on stderr why deployment `deployment_id` of `env` waits, what to run; exit 3."""
    from rich.markup import escape

    from conveyor.cli.output import err_console
    from conveyor.errors import EXIT_WAITING

    why = why.removeprefix("paused: ")
    out = err_console()
    out.print(f"waiting: {escape(f'deployment {deployment_id} of {env} is paused: {why}')}")
    out.print(f"next: conveyor promote {env}   # go on with the rollout")
    out.print(f"next: conveyor resume {env}    # run the paused step again")
    out.print(f"next: conveyor abort {env}     # roll it back")
    raise typer.Exit(EXIT_WAITING)


def show_notes(rt: Any) -> None:
    """Warnings gathered while starting the platform or writing the state, on stderr."""
    for note in [*rt.notes, *rt.store.notes]:
        progress(f"note: {note}")


def parse_release_args(values: list[str]) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for value in values:
        service, sep, release = value.partition("=")
        if not sep or not service or not release:
            raise UsageError(f'--release expects SERVICE=RELEASE, got "{value}"')
        wanted[service] = release
    return wanted


def newest(rt: Any, skip: set[str]) -> dict[str, str]:
    from conveyor.engine.deployments import newest_releases

    return newest_releases(rt, skip)


def show_proposal(proposal: Any, as_json: bool, dry_run: bool) -> None:
    if as_json:
        emit_json(proposal_json(proposal, dry_run))
        return
    if not proposal.plan.steps:
        show_nothing(proposal.environment)
        return
    say(f"plan for {proposal.environment} ({proposal.strategy}), nothing changed:")
    if len(proposal.services) > 1 or any(k != "web" for _, k, _ in proposal.services):
        order = " -> ".join(f"{n} ({k}, {s})" for n, k, s in proposal.services)
        say(f"order: {order}")
    for line in proposal.plan.describe():
        say(line)


def show_nothing(environment: str) -> None:
    """A deploy with nothing to do (here or through a server)."""
    say(f"{environment} already runs these releases; nothing to do")


def proposal_json(proposal: Any, dry_run: bool) -> dict[str, Any]:
    """A deploy's plan as `--json` shows it (and `conveyor server` answers it)."""
    return {
        "environment": proposal.environment,
        "dry_run": dry_run,
        "strategy": proposal.strategy,
        "releases": proposal.releases,
        "previous": proposal.previous,
        "services": [
            {"name": name, "kind": kind, "strategy": strategy}
            for name, kind, strategy in proposal.services
        ],
        "steps": [
            {"index": i + 1, "description": s.describe(), **s.to_dict()}
            for i, s in enumerate(proposal.plan.steps)
        ],
    }


def show_deployment(record: Any, as_json: bool, url: str) -> None:
    show_deployment_json(deployment_json(record), as_json, url)


def show_deployment_json(data: dict[str, Any], as_json: bool, url: str) -> None:
    """A deployment as `deploy`, `rollback`, `promote`... print it, from its `--json`
    (here or from a server)."""
    if as_json:
        emit_json(data)
        return
    status, env = data["status"], data["environment"]
    releases = ", ".join(f"{s} {r}" for s, r in sorted(data["releases"].items()))
    say(f"{data['kind']} {data['id']} {status.replace('_', ' ')}: {releases}")
    if data["error"]:
        say(f"  reason: {data['error']}")
    if status == "paused":
        from conveyor.engine.unfinished import next_commands_of

        say(f"  {next_commands_of(env, status, data['id'])}")
    elif status in ("running", "aborting", "rolling_back"):
        say(f"  still in progress; follow it with: conveyor status {env}")
    say(f"  {url}")


def deployment_json(d: Any) -> dict[str, Any]:
    from conveyor.engine.step_hosts import plan_hosts

    duration = None
    if d.finished_at is not None:
        duration = round((d.finished_at - d.started_at).total_seconds(), 3)
    return {
        "id": d.id,
        "environment": d.environment,
        "kind": d.kind,
        "status": d.status,
        "strategy": d.strategy,
        "releases": d.releases,
        "previous": d.previous,
        "user": d.user,
        "reason": d.reason,
        "error": d.error,
        "started_at": iso(d.started_at),
        "finished_at": iso(d.finished_at),
        "duration_s": duration,
        "hosts": plan_hosts(d.plan),
    }
