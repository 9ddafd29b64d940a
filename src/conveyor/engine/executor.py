"""Runs a plan's steps against the target and router, journaling each one.

The journal entry of a step is written before the step starts and after it
ends, so a killed executor leaves an exact record of where it stopped; every
step is idempotent, so `conveyor resume` simply runs the unfinished step again.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.checks.base import Check
from conveyor.checks.command import CommandCheck
from conveyor.checks.wait import fail_fast_for, make_check, wait_until_healthy
from conveyor.engine import failpoints
from conveyor.engine.analysis_run import AnalysisRun, preview_environment
from conveyor.engine.plan import (
    FORWARD,
    Analyze,
    AwaitApproval,
    BackupDatabase,
    CheckMigration,
    DrainInstances,
    KeepWarm,
    MarkCurrent,
    Migrate,
    Pause,
    PendingMigrations,
    Preview,
    RestoreDatabase,
    RunHook,
    SetWeights,
    SmokeTests,
    StartAnalysis,
    StartInstances,
    Step,
    StopAnalysis,
    StopInstances,
    VerifyRelease,
    WaitHealthy,
)
from conveyor.engine.release_env import release_env
from conveyor.engine.runtime import Runtime
from conveyor.environ import expand_env, instance_argv
from conveyor.errors import (
    AnalysisFailedError,
    ConveyorError,
    HealthCheckError,
    SmokeTestError,
    TargetError,
    WrongAnswerError,
)
from conveyor.redaction import env_secrets, redact_text
from conveyor.store.records import (
    REQUEST_ABORT,
    REQUEST_PAUSE,
    REQUEST_PROMOTE,
    REQUEST_PROMOTE_FULL,
    STEP_DONE,
    STEP_FAILED,
    STEP_PAUSED,
    STEP_SKIPPED,
    InstanceRecord,
    ReleaseRecord,
)
from conveyor.targets.base import BACKOFF, EXITED, FATAL, STOPPED, UNKNOWN, InstanceSpec

if TYPE_CHECKING:
    from conveyor.engine.release_phase import ReleasePhase

HOST = "127.0.0.1"
CRASH_LOOP_RESTARTS = 3  # restarts while waiting for health that mean it will not come up
LOG_LINES_ON_FAILURE = 20

REQUEST_POLL_S = 0.2  # how often a running step looks for pause/abort/promote requests
# Steps that wait on something outside Conveyor: a request interrupts them at once.
# The others are short and finish first (a half-applied weight change helps nobody).
# A migration is not interrupted: stopping it half-way helps nobody (abort acts after it).
INTERRUPTIBLE = (
    Pause,
    Analyze,
    WaitHealthy,
    DrainInstances,
    SmokeTests,
    BackupDatabase,
    AwaitApproval,
)

Progress = Callable[[str], None]


class Interrupted(Exception):
    """A step was stopped by a request or a pause; `by` says who or why."""

    def __init__(self, message: str, by: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.by = by


class Paused(Interrupted):
    """The deployment pauses at this step (it runs again on resume)."""


class AbortRequested(Interrupted):
    """`conveyor abort` asked the running deployment to restore the previous releases."""


class PromoteFull(Interrupted):
    """`conveyor promote --full` asked to skip the remaining steps and promote now."""


class _Promoted(Interrupted):
    """`conveyor promote` ended the current pause or analysis."""


class StepFailed(ConveyorError):
    """A step failed; `index` counts from 1 within the deployment."""

    def __init__(self, index: int, step: Step, cause: ConveyorError) -> None:
        super().__init__(f"step {index} ({step.describe()}) failed: {cause.message}", cause.hint)
        self.index = index
        self.step = step
        self.cause = cause


class Executor:
    """Executes steps for one deployment of one environment."""

    def __init__(
        self, rt: Runtime, environment: str, deployment_id: str, progress: Progress
    ) -> None:
        self.rt = rt
        self.router = rt.router_for(environment)
        self.environment = environment
        self.deployment_id = deployment_id
        self.progress = progress

    @property
    def release_phase(self) -> ReleasePhase:
        from conveyor.engine.release_phase import ReleasePhase

        return ReleasePhase(self.rt, self.environment, self.deployment_id, self.progress)

    async def run(self, steps: Sequence[Step], first_index: int = 1) -> None:
        """Run `steps`, numbering them from `first_index` in the journal.

        Raises `StepFailed` when a step fails and an `Interrupted` when a
        request or a pause stops the run (the step is journaled as paused).
        """
        store = self.rt.store
        try:
            for offset, step in enumerate(steps):
                index = first_index + offset
                store.step_started(self.deployment_id, index, step.kind, step.describe())
                skipped = self._skip_reason(step)
                if skipped is not None:  # said once, by the step that found out
                    store.step_finished(self.deployment_id, index, STEP_SKIPPED, skipped)
                    continue
                self.progress(f"[{step.service}] {step.describe()}")
                failpoints.hit(f"executor.before_step:{index}")
                try:
                    note = await self._guarded(step, index)
                except _Promoted as promoted:
                    store.step_finished(self.deployment_id, index, STEP_SKIPPED, promoted.message)
                    self.progress(f"[{step.service}] {promoted.message}")
                    continue
                except Interrupted as interrupted:
                    store.step_finished(self.deployment_id, index, STEP_PAUSED, interrupted.message)
                    raise
                except ConveyorError as error:
                    store.step_finished(self.deployment_id, index, STEP_FAILED, error.message)
                    raise StepFailed(index, step, error) from error
                failpoints.hit(f"executor.step_done:{index}")
                store.step_finished(self.deployment_id, index, STEP_DONE, note)
                failpoints.hit(f"executor.after_step:{index}")
        finally:
            await self.stop_background()

    def _skip_reason(self, step: Step) -> str | None:
        """Why `step` has nothing to do (a release phase without pending migrations)."""
        if isinstance(step, CheckMigration | BackupDatabase | Migrate):
            return self.release_phase.skip_reason(step)
        return None

    # -- requests and the background analysis --------------------------------------

    _background: asyncio.Task[None] | None = None
    _background_failure: AnalysisFailedError | None = None

    def start_background(self, step: StartAnalysis, index: int) -> None:
        """Run `step`'s analysis beside the next steps; a failure interrupts them."""
        if self._background is not None:
            return
        run = AnalysisRun(self.rt, self.environment, self.deployment_id, index, step, self.progress)

        async def watch() -> None:
            verdict = await run.run(background=True)
            self._background_failure = AnalysisFailedError(
                f"background analysis {step.name} failed: {verdict.message}",
                hint=f"see why: conveyor explain {self.deployment_id}",
            )

        self._background = asyncio.create_task(watch())

    async def stop_background(self) -> None:
        task, self._background = self._background, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _check_background(self) -> None:
        task = self._background
        if task is not None and task.done() and not task.cancelled():
            error = task.exception()
            if error is not None and self._background_failure is None:
                raise error
        if self._background_failure is not None:
            raise self._background_failure

    def _take_request(self, step: Step) -> None:
        """Act on a pending request: raise the matching `Interrupted`."""
        store = self.rt.store
        request, by = store.get_request(self.deployment_id)
        if request is None:
            return
        who = by or "someone"
        if request == REQUEST_ABORT:
            raise AbortRequested(f"aborted by {who}", who)
        if request == REQUEST_PAUSE:
            store.set_request(self.deployment_id, None)
            raise Paused(f"paused by {who}", who)
        if request == REQUEST_PROMOTE_FULL:
            store.set_request(self.deployment_id, None)
            raise PromoteFull(f"fully promoted by {who}", who)
        skippable = isinstance(step, Pause | Analyze) and not isinstance(step, StartAnalysis)
        if request == REQUEST_PROMOTE and skippable:
            store.set_request(self.deployment_id, None)
            raise _Promoted(f"promoted by {who}: step skipped", who)

    async def _guarded(self, step: Step, index: int) -> str | None:
        """Execute a step while watching for requests and the background analysis;
        returns the step's note for the journal."""
        if step.phase != FORWARD:
            return await self.execute(step, index)
        self._check_background()
        self._take_request(step)
        if not isinstance(step, INTERRUPTIBLE):
            note = await self.execute(step, index)
            self._check_background()
            return note
        task = asyncio.create_task(self.execute(step, index))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=REQUEST_POLL_S)
                if done:
                    return task.result()
                self._check_background()
                self._take_request(step)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConveyorError):
                    await task

    async def execute(self, step: Step, index: int = 0) -> str | None:
        """Run one step; safe to run again after it partly or fully ran. Returns a note
        for the journal (what a check found, which backup was taken), or None."""
        if isinstance(
            step, PendingMigrations | CheckMigration | BackupDatabase | Migrate | RestoreDatabase
        ):
            return await self.release_phase.execute(step)
        if isinstance(step, VerifyRelease):
            from conveyor.releases.builder import verify_release

            await asyncio.to_thread(
                verify_release, self.rt.store, self.rt.paths, step.service, step.release
            )
            return None
        if isinstance(step, AwaitApproval):
            from conveyor.engine.approvals import await_approval

            return await await_approval(self.rt, self.deployment_id, self.progress)
        if isinstance(step, RunHook):
            return await self._hook(step)
        if isinstance(step, StartInstances):
            await asyncio.gather(*(self._start(step, name) for name in step.instances))
        elif isinstance(step, WaitHealthy):
            await asyncio.gather(
                *(self._wait_healthy(step.service, n, step.recheck) for n in step.instances)
            )
        elif isinstance(step, SmokeTests):
            await self._smoke_tests(step)
        elif isinstance(step, SetWeights):
            await self._set_weights(step)
        elif isinstance(step, DrainInstances):
            await asyncio.gather(*(self._drain(step.service, n) for n in step.instances))
        elif isinstance(step, StopInstances):
            await asyncio.gather(*(self._stop(step.service, n) for n in step.instances))
        elif isinstance(step, MarkCurrent):
            if step.release is None:
                self.rt.store.clear_current(self.environment, step.service)
            else:
                self.rt.store.set_current(
                    self.environment, step.service, step.release, self.deployment_id
                )
        elif isinstance(step, Pause):
            if step.seconds is None:
                reason = step.reason or "waiting for conveyor promote"
                raise Paused(f"paused: {reason}")
            await asyncio.sleep(step.seconds)
        elif isinstance(step, StartAnalysis):
            self.start_background(step, index)
        elif isinstance(step, Analyze):
            await self._analyze(step, index)
        elif isinstance(step, StopAnalysis):
            self._check_background()
            await self.stop_background()
        elif isinstance(step, KeepWarm):
            until = datetime.now(UTC) + timedelta(seconds=step.seconds)
            for name in step.instances:
                self.rt.store.set_instance_state(name, "warm", until)
            from conveyor.engine import warm

            await asyncio.to_thread(warm.schedule, self.rt, self.environment)
        elif isinstance(step, Preview):
            await self._preview(step)
        else:  # pragma: no cover - every step type is handled above
            raise TypeError(f"unknown step {step!r}")
        return None

    async def _analyze(self, step: Analyze, index: int) -> None:
        run = AnalysisRun(self.rt, self.environment, self.deployment_id, index, step, self.progress)
        verdict = await run.run()
        if verdict.action == "promote":
            return
        if verdict.action == "abort":
            raise AnalysisFailedError(
                f"analysis {step.name} failed: {verdict.message}",
                hint=f"see why: conveyor explain {self.deployment_id}",
            )
        raise Paused(f"analysis {step.name} was inconclusive: {verdict.message}")

    async def _preview(self, step: Preview) -> None:
        from conveyor.config.models import BlueGreenStrategy
        from conveyor.routers.base import RouteSpec

        strategy = self.rt.environment(self.environment).strategy
        preview = preview_environment(self.environment)
        router = self.router
        if not step.instances:
            await router.remove_environment(preview)
            return
        if not isinstance(strategy, BlueGreenStrategy) or strategy.preview is None:
            raise TargetError(f"{self.environment} has no preview address (strategy.preview)")
        routes = [
            RouteSpec(
                service=name,
                path=svc.route.path,
                host=svc.route.host,
                strip_prefix=svc.route.strip_prefix,
            )
            for name, svc in self.rt.loaded.config.services.items()
        ]
        await router.ensure_environment(preview, strategy.preview, routes)
        weights: dict[str, int] = {}
        for name in step.instances:
            address = _address(self._instance(name).port)
            await router.register(preview, step.service, address)
            weights[address] = 1
        await router.set_weights(preview, step.service, weights)

    # -- steps -----------------------------------------------------------------

    async def _start(self, step: StartInstances, name: str) -> None:
        store = self.rt.store
        record = store.get_instance(name)
        if record is None:
            record = InstanceRecord(
                name=name,
                environment=self.environment,
                service=step.service,
                release_id=step.release,
                port=_free_port(
                    self._ports_in_use(), self.rt.loaded.config.ports_for(self.environment)
                ),
                state="starting",
                created_at=datetime.now(UTC),
                deployment_id=self.deployment_id,
            )
            # Recorded before the process exists, so a crash right after never
            # leaves a process Conveyor does not know about.
            store.upsert_instance(record)
        spec = self.spec_for(record)
        await self.rt.target.start(spec)
        await self.router.register(self.environment, step.service, _address(record.port))

    async def _wait_healthy(self, service: str, name: str, recheck: bool = False) -> None:
        record = self._instance(name)
        svc = self.rt.loaded.config.service_for(self.environment, service)
        spec = self.spec_for(record)
        check = make_check(svc.health, HOST, record.port, spec.release_dir, spec.env)
        logs_command = f"conveyor logs {self.environment} {service}"

        restarts_before = (await self.rt.target.status(name)).restarts

        async def alive() -> bool:
            status = await self.rt.target.status(name)
            # A process that exits just after supervisord counted it started (Next.js
            # prints "Ready", then fails) is restarted for ever: a crash loop all the same.
            looping = status.restarts - restarts_before >= CRASH_LOOP_RESTARTS
            return status.state not in (FATAL, EXITED, STOPPED, UNKNOWN) and not looping

        strategy = self.rt.environment(self.environment).strategy
        try:
            await wait_until_healthy(
                check,
                interval=svc.health.interval,
                healthy_threshold=1 if recheck else svc.health.healthy_threshold,
                timeout=svc.deploy_timeout,
                is_alive=alive,
                fail_fast=None if recheck else fail_fast_for(svc.health, check, logs_command),
            )
            if strategy.min_ready > 0 and not recheck:
                await asyncio.sleep(strategy.min_ready)
                result = await check.run()
                status = await self.rt.target.status(name)
                if not result.ok or status.restarts > 0 or status.state == BACKOFF:
                    raise HealthCheckError(
                        f"instance {name} did not stay healthy for min_ready "
                        f"({strategy.min_ready:g}s): {result.detail}"
                    )
        except HealthCheckError as error:
            lines = await self.rt.target.logs(name, LOG_LINES_ON_FAILURE)
            secrets = env_secrets(spec.env)  # an app may print its settings when it fails
            tail = "\n".join(f"    {redact_text(line, secrets)}" for line in lines)
            tail = tail or "    (no output)"
            raise HealthCheckError(
                f"instance {name} ({service} {record.release_id}) is not healthy: "
                f"{error.message}\n  last {LOG_LINES_ON_FAILURE} log lines:\n{tail}",
                hint=error.hint
                if isinstance(error, WrongAnswerError)
                else f"see all of it with: {logs_command}",
            ) from error
        self.rt.store.set_instance_state(name, "ready")
        if not recheck:
            self._warn_if_exposed(service, name, record.port)

    def _warn_if_exposed(self, service: str, name: str, port: int) -> None:
        """Say so when a healthy instance listens on every interface, not only on HOST: other
        machines reach it past the router (Express's `app.listen(PORT)` ignores HOST)."""
        from conveyor.targets.listening import all_interfaces, listening_addresses

        wide = all_interfaces(listening_addresses(port))
        if wide:
            shown = f"[{wide[0]}]" if ":" in wide[0] else wide[0]
            self.progress(
                f"[{service}] warning: {name} listens on all interfaces ({shown}:{port}), not "
                f"only on {HOST}: other machines can reach it without the router. Make it "
                f"listen on $HOST (Express: app.listen(process.env.PORT, process.env.HOST))"
            )

    async def _hook(self, step: RunHook) -> str:
        from conveyor.engine.hooks import HookError, run_hooks

        deployment = self.rt.store.get_deployment(self.deployment_id)
        assert deployment is not None
        failures = await run_hooks(self.rt, step.hook, deployment, self.progress)
        if failures:
            raise HookError(
                "; ".join(failures), hint="nothing was changed; fix the hook and deploy again"
            )
        return f"{step.hook} hooks passed"

    async def _smoke_tests(self, step: SmokeTests) -> None:
        """Run the tests one after the other on the instance; the first failure fails."""
        from conveyor.checks.http import HttpCheck
        from conveyor.config.models import SmokeTest

        record = self._instance(step.instance)
        spec = self.spec_for(record)
        base_url = f"http://{HOST}:{record.port}"
        for raw in step.tests:
            test = SmokeTest.model_validate(raw)
            check: Check
            if test.path is not None:
                check = HttpCheck(base_url + test.path, test.expect_status, test.timeout)
            else:
                env = {**spec.env, "SMOKE_URL": base_url}
                argv = instance_argv(test.command or "", env)
                check = CommandCheck(argv, spec.release_dir, env, test.timeout)
            result = await check.run()
            if not result.ok:
                raise SmokeTestError(
                    f"smoke test {test.describe()} of {step.service} {record.release_id} failed "
                    f"on {step.instance}: {result.detail}",
                    hint=f"the instance never got traffic; see its log with: conveyor logs "
                    f"{self.environment} {step.service}",
                )
            self.progress(f"[{step.service}] smoke test {test.describe()}: passed")

    async def _set_weights(self, step: SetWeights) -> None:
        """Apply the step's weights; every other backend of the service gets 0."""
        store = self.rt.store
        router = self.router
        weights = dict.fromkeys(await router.weights(self.environment, step.service), 0)
        for name, weight in step.weights:
            weights[_address(self._instance(name).port)] = weight
        await router.set_weights(self.environment, step.service, weights)
        for name, weight in step.weights:
            store.set_instance_state(name, "serving" if weight > 0 else "ready")

    async def _drain(self, service: str, name: str) -> None:
        record = self.rt.store.get_instance(name)
        if record is None:
            return
        svc = self.rt.loaded.config.service_for(self.environment, service)
        self.rt.store.set_instance_state(name, "draining")
        left = await self.router.drain(
            self.environment, service, _address(record.port), svc.drain_timeout
        )
        if left:
            self.progress(
                f"[{service}] {name}: {left} request(s) still in flight after "
                f"drain_timeout {svc.drain_timeout:g}s"
            )

    async def _stop(self, service: str, name: str) -> None:
        record = self.rt.store.get_instance(name)
        svc = self.rt.loaded.config.service_for(self.environment, service)
        if record is not None:
            await self.router.remove(self.environment, service, _address(record.port))
        await self.rt.target.stop(name, svc.stop_timeout)
        if record is not None:
            self.rt.store.delete_instance(name)

    # -- helpers ---------------------------------------------------------------

    def spec_for(self, record: InstanceRecord) -> InstanceSpec:
        """The target's view of an instance, built from config and its release.

        Raises `ConfigError` when what the instance needs uses an unset variable (a
        config loaded for a command that starts nothing must not start it with `${VAR}`).
        """
        self.rt.loaded.require_set(self.environment, record.service)
        release = self._release(record.service, record.release_id)
        svc = self.rt.loaded.config.service_for(self.environment, record.service)
        env = expand_env(
            {
                **release_env(self.rt, self.environment, record.service, record.release_id),
                "PORT": str(record.port),
                "HOST": HOST,
                "CONVEYOR_INSTANCE": record.name,
            }
        )
        return InstanceSpec(
            name=record.name,
            environment=self.environment,
            service=record.service,
            release_id=record.release_id,
            release_dir=Path(release.path),
            command=instance_argv(svc.run, env),
            env=env,
            port=record.port,
            stop_timeout=svc.stop_timeout,
            log_path=self.rt.paths.instance_logs / f"{record.name}.log",
        )

    def _release(self, service: str, release_id: str) -> ReleaseRecord:
        release = self.rt.store.get_release(service, release_id)
        if release is None:
            raise TargetError(
                f"release {release_id} of {service} is not in the store",
                hint="it may have been pruned; build and deploy again",
            )
        return release

    def _instance(self, name: str) -> InstanceRecord:
        record = self.rt.store.get_instance(name)
        if record is None:
            raise TargetError(f"instance {name} is not recorded in the state store")
        return record

    def _ports_in_use(self) -> set[int]:
        return {i.port for i in self.rt.store.list_instances()}


def _address(port: int) -> str:
    return f"{HOST}:{port}"


def _free_port(taken: set[int], ports: range) -> int:
    """A port of `ports` (the config's `ports`) that is free and not recorded.

    Ports from the kernel's ephemeral range (what binding port 0 hands out) can
    be taken at any moment by an outgoing connection, e.g. Caddy's to an
    upstream: the default range stays below it.
    """
    start = secrets.randbelow(len(ports))
    for offset in range(len(ports)):
        port = ports[(start + offset) % len(ports)]
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        return port
    raise TargetError(
        f"no free TCP port on {HOST} in {ports.start}-{ports.stop - 1}",
        hint="widen `ports` in conveyor.yml (or stop what holds them)",
    )
