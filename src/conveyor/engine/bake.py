"""The bake of `verify:`: checks that go on after a deploy gave its releases all the traffic.

For `bake` seconds, every `interval` the smoke tests run against the
environment's URL (through the router, as clients reach it), while the
analysis, if any, judges the traffic of the deployment's releases from the
router's counters (`BakeAnalysisRun`). The first failure ends the bake with a
`VerifyFailedError` (the deploy rolls back); at its end the analysis must have
passed: with too little traffic it is inconclusive, and its `on_inconclusive`
pauses the deployment or fails it.

When the bake started is an event of the deployment, so a bake cut short by a
crash goes on for what was left of it on `conveyor resume` (at least one
interval); a paused one starts again in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

from conveyor.analysis import CANARY, AnalysisSpec, Decision, ReleaseStats, Verdict
from conveyor.analysis.metrics import BASELINE, STABLE
from conveyor.analysis.text import seconds
from conveyor.checks.base import Check
from conveyor.checks.command import CommandCheck
from conveyor.checks.http import HttpCheck
from conveyor.config.models import SmokeTest, command_argv
from conveyor.engine import failpoints
from conveyor.engine.analysis_run import AnalysisRun, _stats
from conveyor.engine.handlers.base import StepContext
from conveyor.engine.hooks import hook_env
from conveyor.engine.interruptions import Paused
from conveyor.engine.plan import Analyze, Verify
from conveyor.engine.runtime import Runtime
from conveyor.errors import ConveyorError, VerifyFailedError
from conveyor.routers.tls import trusted_certificate
from conveyor.store.records import DeploymentRecord
from conveyor.store.repository import Store

BAKE_EVENT = "verify"  # its data: {"step": index, "started": ISO time, or None: start again}
ANALYSIS_GRACE_S = 30.0  # how long the analysis' last verdict may come after the bake's end


def bake_started(store: Store, deployment_id: str, index: int) -> datetime | None:
    """When the bake of step `index` started, if it is under way (cut short by a crash)."""
    for event in store.list_events(deployment_id=deployment_id, kind=BAKE_EVENT):
        if event.data.get("step") == index:
            started = event.data.get("started")
            return datetime.fromisoformat(started) if isinstance(started, str) else None
    return None


def _record_start(rt: Runtime, ctx: StepContext, index: int, started: datetime | None) -> None:
    what = "started" if started is not None else "ended undecided; it starts again on resume"
    rt.store.add_event(
        BAKE_EVENT,
        f"{ctx.deployment_id}: the bake of step {index} {what}",
        ctx.environment,
        ctx.deployment_id,
        {"step": index, "started": started.isoformat() if started is not None else None},
    )


class BakeAnalysisRun(AnalysisRun):
    """The verify analysis: the traffic of every instance that runs its service's release of
    the deployment counts as the new release's ("canary" in the analysis' words)."""

    def __init__(
        self, ctx: StepContext, index: int, step: Analyze, releases: dict[str, str]
    ) -> None:
        super().__init__(ctx.rt, ctx.environment, ctx.deployment_id, index, step, _quiet)
        self.releases = releases

    async def snapshot(self) -> dict[str, ReleaseStats]:
        router = self.rt.router_for(self.environment)
        new = ReleaseStats.zero()
        for service, release in sorted(self.releases.items()):
            traffic = await router.traffic_stats(self.environment, service)
            for instance in self.rt.store.list_instances(self.environment, service):
                seen = traffic.get(instance.address)
                if instance.release_id == release and seen is not None:
                    new = new + _stats(seen)
        return {CANARY: new, BASELINE: ReleaseStats.zero(), STABLE: ReleaseStats.zero()}


def _quiet(_: str) -> None:
    return None


class Bake:
    """One run of a `Verify` step (again after a crash: for what is left of it)."""

    def __init__(
        self, ctx: StepContext, step: Verify, index: int, deployment: DeploymentRecord
    ) -> None:
        self.ctx = ctx
        self.step = step
        self.index = index
        env = {**hook_env(deployment), "SMOKE_URL": step.url}
        root = ctx.rt.loaded.root
        trust = trusted_certificate(ctx.rt.loaded, ctx.environment)
        self.checks: list[tuple[SmokeTest, Check]] = []
        for raw in step.tests:
            test = SmokeTest.model_validate(raw)
            check: Check
            if test.path is not None:
                url = step.url.rstrip("/") + test.path
                check = HttpCheck(url, test.expect_status, test.timeout, trust=trust)
            else:
                check = CommandCheck(command_argv(test.command or ""), root, env, test.timeout)
            self.checks.append((test, check))
        self.releases = dict(deployment.releases)
        self.rounds = 0
        self.smoke = ""  # what the latest round found
        self.origin = time.monotonic()  # when the bake started, on this clock

    def _analysis(self, length: float) -> BakeAnalysisRun | None:
        """The analysis over the next `length` seconds: it passes at their end, with enough
        traffic and no failing check, and is inconclusive otherwise."""
        if not self.step.analysis:
            return None
        spec = {**self.step.spec, "duration": length, "max_duration": length}
        analyze = Analyze(self.step.service, name=self.step.analysis, spec=spec)
        return BakeAnalysisRun(self.ctx, self.index, analyze, self.releases)

    async def run(self) -> str:
        rt, step = self.ctx.rt, self.step
        started = bake_started(rt.store, self.ctx.deployment_id, self.index)
        now = datetime.now(UTC)
        if started is None:
            started = now
            _record_start(rt, self.ctx, self.index, started)
        spent = max(0.0, (now - started).total_seconds())
        interval = AnalysisSpec.from_dict(step.spec).interval if step.analysis else step.interval
        length = max(step.bake - spent, step.interval, interval)
        if spent > 0:
            self._say(f"the bake goes on after an interruption: {seconds(length)} left")
        self.origin = time.monotonic() - spent
        end = spent + length
        analysis = self._analysis(length)
        task = asyncio.create_task(analysis.run()) if analysis is not None else None
        try:
            while True:
                self._check(task)
                await self._smoke_round()
                self._check(task)
                self._report(analysis)
                left = end - self.elapsed()
                if left <= 0:
                    break
                if task is not None and not task.done():  # its failure ends the wait
                    await asyncio.wait({task}, timeout=min(step.interval, left))
                else:
                    await asyncio.sleep(min(step.interval, left))
            verdict = await self._final(task) if task is not None else None
        finally:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConveyorError):
                    await task
        return self._conclude(verdict)

    def elapsed(self) -> float:
        """Seconds since the bake started (before an interruption too)."""
        return time.monotonic() - self.origin

    async def _smoke_round(self) -> None:
        details = []
        for test, check in self.checks:
            result = await check.run()
            if not result.ok:
                raise self._failed(f"smoke test {test.describe()}: {result.detail}")
            details.append(result.detail)
        self.rounds += 1
        self.smoke = "; ".join(details)
        failpoints.hit(f"verify.after_round:{self.rounds}")

    def _check(self, task: asyncio.Task[Verdict] | None) -> None:
        """Raise when the analysis failed (or broke) before the bake's end."""
        if task is None or not task.done():
            return
        verdict = task.result()  # an error of the run itself goes up as it is
        if verdict.decision is Decision.FAIL:
            raise self._failed(f"analysis {self.step.analysis}: {verdict.message}")

    async def _final(self, task: asyncio.Task[Verdict]) -> Verdict:
        done, _ = await asyncio.wait({task}, timeout=ANALYSIS_GRACE_S)
        if not done:
            raise self._failed(
                f"analysis {self.step.analysis} gave no verdict within "
                f"{seconds(ANALYSIS_GRACE_S)} of the bake's end",
            )
        return task.result()

    def _conclude(self, verdict: Verdict | None) -> str:
        step = self.step
        found = [f"{self.rounds} round{'s' * (self.rounds != 1)} of smoke tests passed"]
        if self.smoke:
            found[0] += f" (last: {self.smoke})"
        if not self.checks:
            found = []
        if verdict is not None:
            if verdict.decision is Decision.FAIL or verdict.action == "abort":
                raise self._failed(f"analysis {step.analysis}: {verdict.message}")
            if verdict.decision is not Decision.PASS:
                _record_start(self.ctx.rt, self.ctx, self.index, None)
                raise Paused(
                    f"paused: verify: analysis {step.analysis} was inconclusive: {verdict.message}"
                )
            found.append(f"analysis {step.analysis}: {verdict.message}")
        return f"baked {seconds(step.bake)}: " + "; ".join(found)

    def _report(self, analysis: BakeAnalysisRun | None) -> None:
        elapsed = min(self.elapsed(), self.step.bake)
        left = self.step.bake - elapsed
        parts = [f"{seconds(elapsed)} of {seconds(self.step.bake)} baked, {seconds(left)} left"]
        if self.checks:
            parts.append(f"smoke passed: {self.smoke}")
        if analysis is not None:
            latest = analysis.latest
            reading = latest.message if latest is not None else "first snapshot to come"
            parts.append(f"analysis {self.step.analysis}: {reading}")
        self._say("; ".join(parts))

    def _say(self, text: str) -> None:
        self.ctx.progress(f"[{self.step.service}] verify: {text}")

    def _failed(self, what: str) -> VerifyFailedError:
        bake = seconds(self.step.bake)
        return VerifyFailedError(
            f"verify failed {seconds(self.elapsed())} into the {bake} bake: {what}",
            hint=f"see the readings: conveyor explain {self.ctx.deployment_id}",
        )


async def bake(ctx: StepContext, step: Verify, index: int) -> str:
    """Run the bake of `step`; the journal note says what it found."""
    deployment = ctx.rt.store.get_deployment(ctx.deployment_id)
    assert deployment is not None
    return await Bake(ctx, step, index, deployment).run()
