"""Handlers of the steps that start, check, route to and stop instances.

Addresses come from the instance records (the target chose them when it
reserved the port); nothing here builds one.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.checks.base import Check
from conveyor.checks.command import CommandCheck
from conveyor.checks.on_host import on_instance_host
from conveyor.checks.wait import fail_fast_for, host_header, make_check, wait_until_healthy
from conveyor.concurrently import every
from conveyor.engine.accessories import filled_command
from conveyor.engine.analysis_run import preview_environment
from conveyor.engine.handlers.base import StepContext, StepHandler
from conveyor.engine.plan import (
    DrainInstances,
    Preview,
    SetWeights,
    SmokeTests,
    StartInstances,
    StopInstances,
    WaitHealthy,
)
from conveyor.engine.release_env import release_env, release_user, require_command_runnable
from conveyor.engine.settings import settings_of
from conveyor.environ import expand_env, instance_argv
from conveyor.errors import (
    HealthCheckError,
    PortTakenError,
    SmokeTestError,
    TargetError,
    WrongAnswerError,
)
from conveyor.printable import printable
from conveyor.redaction import env_secrets, redact_text
from conveyor.store.records import InstanceRecord, ReleaseRecord
from conveyor.targets.base import (
    BACKOFF,
    EXITED,
    FATAL,
    LOCAL_HOST,
    STOPPED,
    UNKNOWN,
    InstanceSpec,
    InstanceStatus,
    split_address,
)

if TYPE_CHECKING:
    from conveyor.config.models import CommandHealth, HttpHealth, TcpHealth

    HealthSpec = HttpHealth | TcpHealth | CommandHealth

CRASH_LOOP_RESTARTS = 3  # restarts while waiting for health that mean it will not come up
LOG_LINES_ON_FAILURE = 20


class StartHandler(StepHandler[StartInstances]):
    step_type = StartInstances

    async def run(self, ctx: StepContext, step: StartInstances, index: int) -> str | None:
        placed = step.placed(ctx.target.hosts())
        await every(*(self._start(ctx, step, name, host) for name, host in placed))
        return None

    async def _start(self, ctx: StepContext, step: StartInstances, name: str, host: str) -> None:
        store = ctx.rt.store
        settings = settings_of(step)
        record = store.get_instance(name)
        if record is None:
            if settings.worker:  # no port, no address: nothing reaches it
                port, address = 0, ""
            else:
                taken = {i.port for i in store.list_instances() if i.host == host}
                taken |= {a.port for a in store.list_accessories() if a.host == host}
                ports = ctx.rt.loaded.config.ports_for(ctx.environment)
                endpoint = await ctx.target.reserve(host, taken, ports)
                port, address, host = endpoint.port, endpoint.address, endpoint.host
            record = InstanceRecord(
                name=name,
                environment=ctx.environment,
                service=step.service,
                release_id=step.release,
                port=port,
                host=host,
                address=address,
                state="starting",
                created_at=datetime.now(UTC),
                deployment_id=ctx.deployment_id,
            )
            # Recorded before the process exists, so a crash right after never
            # leaves a process Conveyor does not know about.
            store.upsert_instance(record)
        spec = spec_for(ctx, record, settings.stop_timeout, settings.stop_signal)
        await ctx.target.start(spec)
        if record.address:
            await ctx.router.register(ctx.environment, step.service, record.address)


class WaitHealthyHandler(StepHandler[WaitHealthy]):
    step_type = WaitHealthy
    interruptible = True

    async def run(self, ctx: StepContext, step: WaitHealthy, index: int) -> str | None:
        await every(*(self._wait(ctx, step, step.service, n, step.recheck) for n in step.instances))
        return None

    async def _wait(
        self, ctx: StepContext, step: WaitHealthy, service: str, name: str, recheck: bool
    ) -> None:
        record = instance(ctx, name)
        settings = settings_of(step)
        spec = spec_for(ctx, record, settings.stop_timeout)
        logs_command = f"conveyor logs {ctx.environment} {service}"
        target = ctx.target
        if not record.address:
            await self._worker(ctx, step, record, spec)
            return
        health = health_config(settings.health)
        listen, port = split_address(record.address)
        check = make_check(health, listen, port, spec.release_dir, spec.env)
        check = on_instance_host(check, ctx.target, record.host)

        restarts_before = (await target.status(name)).restarts

        async def alive() -> bool:
            status = await target.status(name)
            # A process that exits just after supervisord counted it started (Next.js
            # prints "Ready", then fails) is restarted for ever: a crash loop all the same.
            looping = status.restarts - restarts_before >= CRASH_LOOP_RESTARTS
            return status.state not in (FATAL, EXITED, STOPPED, UNKNOWN) and not looping

        min_ready = settings.min_ready
        try:
            await wait_until_healthy(
                check,
                interval=health.interval,
                healthy_threshold=1 if recheck else health.healthy_threshold,
                timeout=settings.deploy_timeout,
                is_alive=alive,
                fail_fast=None if recheck else fail_fast_for(health, check, logs_command),
            )
            if min_ready > 0 and not recheck:
                await asyncio.sleep(min_ready)
                result = await check.run()
                status = await target.status(name)
                if not result.ok or status.restarts > 0 or status.state == BACKOFF:
                    raise HealthCheckError(
                        f"instance {name} did not stay healthy for min_ready "
                        f"({min_ready:g}s): {result.detail}"
                    )
            if not recheck and record.host == LOCAL_HOST:
                _refuse_a_stranger(record, await target.status(name))
        except HealthCheckError as error:
            raise await _unhealthy(ctx, record, spec, error, logs_command) from error
        ctx.rt.store.set_instance_state(name, "ready")
        if not recheck and record.host == LOCAL_HOST:
            _warn_if_exposed(ctx, service, record)

    async def _worker(
        self, ctx: StepContext, step: WaitHealthy, record: InstanceRecord, spec: InstanceSpec
    ) -> None:
        """A worker is healthy once its process ran `min_ready` without a restart (and its
        command check, if any, passed); then it works, so it is `serving` (no traffic)."""
        from conveyor.engine.worker_health import wait_worker_healthy

        settings = settings_of(step)
        check: Check | None = None
        health = health_config(settings.health) if settings.health else None
        if health is not None and health.type == "command":  # (the config allows no other)
            argv = instance_argv(health.command, spec.env)
            check = CommandCheck(argv, spec.release_dir, spec.env, health.timeout)
            check = on_instance_host(check, ctx.target, record.host)
        logs_command = f"conveyor logs {ctx.environment} {step.service}"
        try:
            await wait_worker_healthy(
                ctx.target,
                record.name,
                min_ready=0.0 if step.recheck else settings.min_ready,
                timeout=settings.deploy_timeout,
                check=check,
                interval=health.interval if health is not None else 1.0,
                healthy_threshold=1 if health is None or step.recheck else health.healthy_threshold,
            )
        except HealthCheckError as error:
            raise await _unhealthy(ctx, record, spec, error, logs_command) from error
        ctx.rt.store.set_instance_state(record.name, "serving")


async def _unhealthy(
    ctx: StepContext,
    record: InstanceRecord,
    spec: InstanceSpec,
    error: HealthCheckError,
    logs_command: str,
) -> HealthCheckError:
    """The error of an instance that did not become healthy, with its last log lines."""
    lines = await ctx.target.logs(record.name, LOG_LINES_ON_FAILURE)
    secrets = env_secrets(spec.env)  # an app may print its settings when it fails
    tail = "\n".join(f"    {redact_text(printable(line), secrets)}" for line in lines)
    tail = tail or "    (no output)"
    return HealthCheckError(
        f"instance {record.name} ({record.service} {record.release_id}) is not healthy: "
        f"{error.message}\n  last {LOG_LINES_ON_FAILURE} log lines:\n{tail}",
        hint=error.hint
        if isinstance(error, WrongAnswerError | PortTakenError)
        else f"see all of it with: {logs_command}",
    )


def _refuse_a_stranger(record: InstanceRecord, status: InstanceStatus) -> None:
    """Raise PortTakenError when another program than the instance (the process group
    supervisord started) listens on its port: it took the port after Conveyor chose it,
    the health checks were its answers, and the router would send it the traffic."""
    from conveyor.targets.listening import named_listeners, other_listeners

    _, port = split_address(record.address)
    strangers = other_listeners(port, status.pid) if status.pid else []
    if strangers == []:
        return
    raise PortTakenError(
        f"port {port} of instance {record.name} is held by another program: "
        f"{named_listeners(strangers)}; the health checks were its answers",
        hint="that program took the port after Conveyor chose it for the instance: deploy "
        "again (Conveyor chooses another port), and keep other programs out of `ports`",
    )


def _warn_if_exposed(ctx: StepContext, service: str, record: InstanceRecord) -> None:
    """Say so when a healthy local instance listens on every interface, not only on its
    HOST: other machines reach it past the router (Express's `app.listen(PORT)` ignores
    HOST)."""
    from conveyor.targets.listening import all_interfaces, listening_addresses

    listen, port = split_address(record.address)
    wide = all_interfaces(listening_addresses(port))
    if wide:
        shown = f"[{wide[0]}]" if ":" in wide[0] else wide[0]
        ctx.progress(
            f"[{service}] warning: {record.name} listens on all interfaces ({shown}:{port}), "
            f"not only on {listen}: other machines can reach it without the router. Make it "
            f"listen on $HOST (Express: app.listen(process.env.PORT, process.env.HOST))"
        )


class SmokeTestsHandler(StepHandler[SmokeTests]):
    step_type = SmokeTests
    interruptible = True

    async def run(self, ctx: StepContext, step: SmokeTests, index: int) -> str | None:
        """Run the tests one after the other on the instance; the first failure fails."""
        from conveyor.checks.http import HttpCheck
        from conveyor.config.models import SmokeTest

        record = instance(ctx, step.instance)
        spec = spec_for(ctx, record, stop_timeout=0.0)  # for its env and directory
        base_url = f"http://{record.address}"
        listen, port = split_address(record.address)
        for raw in step.tests:
            test = SmokeTest.model_validate(raw)
            check: Check
            if test.path is not None:
                check = HttpCheck(
                    base_url + test.path,
                    test.expect_status,
                    test.timeout,
                    host_header=host_header(listen, port),
                )
            else:
                env = {**spec.env, "SMOKE_URL": base_url}
                argv = instance_argv(test.command or "", env)
                check = CommandCheck(argv, spec.release_dir, env, test.timeout)
                check = on_instance_host(check, ctx.target, record.host)
            result = await check.run()
            if not result.ok:
                raise SmokeTestError(
                    f"smoke test {test.describe()} of {step.service} {record.release_id} failed "
                    f"on {step.instance}: {result.detail}",
                    hint=f"the instance never got traffic; see its log with: conveyor logs "
                    f"{ctx.environment} {step.service}",
                )
            ctx.progress(f"[{step.service}] smoke test {test.describe()}: passed")
        return None


class SetWeightsHandler(StepHandler[SetWeights]):
    step_type = SetWeights

    async def run(self, ctx: StepContext, step: SetWeights, index: int) -> str | None:
        """Apply the step's weights; every other backend of the service gets 0."""
        router = ctx.router
        weights = dict.fromkeys(await router.weights(ctx.environment, step.service), 0)
        for name, weight in step.weights:
            weights[instance(ctx, name).address] = weight
        await router.set_weights(ctx.environment, step.service, weights)
        for name, weight in step.weights:
            ctx.rt.store.set_instance_state(name, "serving" if weight > 0 else "ready")
        return None


class DrainHandler(StepHandler[DrainInstances]):
    step_type = DrainInstances
    interruptible = True

    async def run(self, ctx: StepContext, step: DrainInstances, index: int) -> str | None:
        timeout = settings_of(step).drain_timeout
        await every(*(self._drain(ctx, step.service, n, timeout) for n in step.instances))
        return None

    async def _drain(self, ctx: StepContext, service: str, name: str, timeout: float) -> None:
        record = ctx.rt.store.get_instance(name)
        if record is None:
            return
        ctx.rt.store.set_instance_state(name, "draining")
        left = await ctx.router.drain(ctx.environment, service, record.address, timeout)
        if left:
            ctx.progress(
                f"[{service}] {name}: {left} request(s) still in flight after "
                f"drain_timeout {timeout:g}s"
            )


class StopHandler(StepHandler[StopInstances]):
    step_type = StopInstances

    async def run(self, ctx: StepContext, step: StopInstances, index: int) -> str | None:
        timeout = settings_of(step).stop_timeout
        await every(*(self._stop(ctx, step.service, n, timeout) for n in step.instances))
        return None

    async def _stop(self, ctx: StepContext, service: str, name: str, timeout: float) -> None:
        record = ctx.rt.store.get_instance(name)
        if record is not None and record.address:  # a worker has no router entry
            await ctx.router.remove(ctx.environment, service, record.address)
        await ctx.target.stop(name, timeout)
        if record is not None:
            ctx.rt.store.delete_instance(name)


class PreviewHandler(StepHandler[Preview]):
    step_type = Preview

    async def run(self, ctx: StepContext, step: Preview, index: int) -> str | None:
        from conveyor.config.models import BlueGreenStrategy
        from conveyor.routers.base import route_specs

        strategy = ctx.rt.environment(ctx.environment).strategy
        preview = preview_environment(ctx.environment)
        router = ctx.router
        if not step.instances:
            await router.remove_environment(preview)
            return None
        if not isinstance(strategy, BlueGreenStrategy) or strategy.preview is None:
            raise TargetError(f"{ctx.environment} has no preview address (strategy.preview)")
        routes = route_specs(ctx.rt.loaded.config.services)
        await router.ensure_environment(preview, strategy.preview, routes)
        weights: dict[str, int] = {}
        for name in step.instances:
            address = instance(ctx, name).address
            await router.register(preview, step.service, address)
            weights[address] = 1
        await router.set_weights(preview, step.service, weights)
        return None


# -- what handlers share ----------------------------------------------------------------


def health_config(data: dict[str, Any]) -> HealthSpec:
    """The `health:` settings a plan carries, as the config model the checks take."""
    from pydantic import TypeAdapter

    from conveyor.config.models import HealthConfig

    spec: HealthSpec = TypeAdapter(HealthConfig).validate_python(data)
    return spec


def spec_for(
    ctx: StepContext, record: InstanceRecord, stop_timeout: float, stop_signal: str = "TERM"
) -> InstanceSpec:
    """The target's view of an instance, from its release and the config's command line and
    environment (resolved now, as they may carry secrets that plans must not journal).

    Raises `ConfigError` when what the instance needs uses an unset variable (a
    config loaded for a command that starts nothing must not start it with `${VAR}`).
    """
    rt, environment = ctx.rt, ctx.environment
    rt.loaded.require_set(environment, record.service)
    release = _release(ctx, record.service, record.release_id)
    svc = rt.loaded.config.service_for(environment, record.service)
    user = release_user(rt, environment, record.service, Path(release.path))
    # A worker (no address) listens on nothing: no PORT, no HOST.
    listens = (
        {"PORT": str(record.port), "HOST": split_address(record.address)[0]}
        if record.address
        else {}
    )
    env = expand_env(
        {
            **release_env(rt, environment, record.service, record.release_id),
            **listens,
            "CONVEYOR_INSTANCE": record.name,
        }
    )
    argv = instance_argv(filled_command(rt, environment, svc.run), env)
    if user is not None:
        require_command_runnable(argv, env, user)
    return InstanceSpec(
        name=record.name,
        environment=environment,
        service=record.service,
        release_id=record.release_id,
        release_dir=Path(release.path),
        command=argv,
        env=env,
        port=record.port,
        stop_timeout=stop_timeout,
        log_path=rt.paths.instance_logs / f"{record.name}.log",
        user=user,
        host=record.host,
        stop_signal=stop_signal,
        stop_as_group=bool(record.address),  # a worker: to its own process only
    )


def _release(ctx: StepContext, service: str, release_id: str) -> ReleaseRecord:
    release = ctx.rt.store.get_release(service, release_id)
    if release is None:
        raise TargetError(
            f"release {release_id} of {service} is not in the store",
            hint="it may have been pruned; build and deploy again",
        )
    return release


def instance(ctx: StepContext, name: str) -> InstanceRecord:
    record = ctx.rt.store.get_instance(name)
    if record is None:
        raise TargetError(f"instance {name} is not recorded in the state store")
    return record
