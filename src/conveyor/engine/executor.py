"""Runs a plan's steps against the target and router, journaling each one.

The journal entry of a step is written before the step starts and after it
ends, so a killed executor leaves an exact record of where it stopped; every
step is idempotent, so `conveyor resume` simply runs the unfinished step again.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from conveyor.checks.wait import make_check, wait_until_healthy
from conveyor.config import command_argv
from conveyor.engine import failpoints
from conveyor.engine.plan import (
    DrainInstances,
    MarkCurrent,
    SetWeights,
    StartInstances,
    Step,
    StopInstances,
    WaitHealthy,
)
from conveyor.engine.runtime import Runtime
from conveyor.errors import ConveyorError, HealthCheckError, TargetError
from conveyor.store.records import STEP_DONE, STEP_FAILED, InstanceRecord, ReleaseRecord
from conveyor.targets.base import BACKOFF, EXITED, FATAL, STOPPED, UNKNOWN, InstanceSpec

HOST = "127.0.0.1"
LOG_LINES_ON_FAILURE = 20
INSTANCE_PORTS = range(20000, 30000)

Progress = Callable[[str], None]


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

    async def run(self, steps: Sequence[Step], first_index: int = 1) -> None:
        """Run `steps`, numbering them from `first_index` in the journal."""
        store = self.rt.store
        for offset, step in enumerate(steps):
            index = first_index + offset
            store.step_started(self.deployment_id, index, step.kind, step.describe())
            self.progress(f"[{step.service}] {step.describe()}")
            failpoints.hit(f"executor.before_step:{index}")
            try:
                await self.execute(step)
            except ConveyorError as error:
                store.step_finished(self.deployment_id, index, STEP_FAILED, error.message)
                raise StepFailed(index, step, error) from error
            failpoints.hit(f"executor.step_done:{index}")
            store.step_finished(self.deployment_id, index, STEP_DONE)
            failpoints.hit(f"executor.after_step:{index}")

    async def execute(self, step: Step) -> None:
        """Run one step; safe to run again after it partly or fully ran."""
        if isinstance(step, StartInstances):
            await asyncio.gather(*(self._start(step, name) for name in step.instances))
        elif isinstance(step, WaitHealthy):
            await asyncio.gather(*(self._wait_healthy(step.service, n) for n in step.instances))
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
        else:  # pragma: no cover - every step type is handled above
            raise TypeError(f"unknown step {step!r}")

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
                port=_free_port(self._ports_in_use()),
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

    async def _wait_healthy(self, service: str, name: str) -> None:
        record = self._instance(name)
        svc = self.rt.loaded.config.service_for(self.environment, service)
        spec = self.spec_for(record)
        check = make_check(svc.health, HOST, record.port, spec.release_dir, spec.env)

        async def alive() -> bool:
            status = await self.rt.target.status(name)
            return status.state not in (FATAL, EXITED, STOPPED, UNKNOWN)

        strategy = self.rt.environment(self.environment).strategy
        try:
            await wait_until_healthy(
                check,
                interval=svc.health.interval,
                healthy_threshold=svc.health.healthy_threshold,
                timeout=svc.deploy_timeout,
                is_alive=alive,
            )
            if strategy.min_ready > 0:
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
            tail = "\n".join(f"    {line}" for line in lines) or "    (no output)"
            raise HealthCheckError(
                f"instance {name} ({service} {record.release_id}) is not healthy: "
                f"{error.message}\n  last {LOG_LINES_ON_FAILURE} log lines:\n{tail}",
                hint=f"see all of it with: conveyor logs {self.environment} {service}",
            ) from error
        self.rt.store.set_instance_state(name, "ready")

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
        """The target's view of an instance, built from config and its release."""
        release = self._release(record.service, record.release_id)
        svc = self.rt.loaded.config.service_for(self.environment, record.service)
        data_dir = self.rt.paths.data / self.environment / record.service
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            # Releases are sealed; Python would otherwise write __pycache__ into
            # them (root ignores the read-only bits) and break their digest.
            "PYTHONDONTWRITEBYTECODE": "1",
            **svc.env,  # the service's env with the environment's merged over it
            "PORT": str(record.port),
            "HOST": HOST,
            "DATA_DIR": str(data_dir),
            "CONVEYOR_ENV": self.environment,
            "CONVEYOR_SERVICE": record.service,
            "CONVEYOR_RELEASE": record.release_id,
            "CONVEYOR_INSTANCE": record.name,
        }
        return InstanceSpec(
            name=record.name,
            environment=self.environment,
            service=record.service,
            release_id=record.release_id,
            release_dir=Path(release.path),
            command=command_argv(svc.run),
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


def _free_port(taken: set[int]) -> int:
    """A port below the kernel's ephemeral range that is free and not recorded.

    Ports from the ephemeral range (what binding port 0 hands out) can be
    taken at any moment by an outgoing connection, e.g. Caddy's to an upstream.
    """
    start = secrets.randbelow(INSTANCE_PORTS.stop - INSTANCE_PORTS.start)
    for offset in range(len(INSTANCE_PORTS)):
        port = INSTANCE_PORTS.start + (start + offset) % len(INSTANCE_PORTS)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        return port
    raise TargetError(
        f"no free TCP port on {HOST} in {INSTANCE_PORTS.start}-{INSTANCE_PORTS.stop - 1}"
    )
