"""Handlers of the steps that check, wait, judge or record (no instance is touched)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from conveyor.engine.analysis_run import AnalysisRun
from conveyor.engine.handlers.base import StepContext, StepHandler
from conveyor.engine.interruptions import Paused
from conveyor.engine.plan import (
    Analyze,
    AwaitApproval,
    KeepWarm,
    MarkCurrent,
    Pause,
    RunHook,
    ShipRelease,
    StartAnalysis,
    StopAnalysis,
    VerifyRelease,
)
from conveyor.errors import AnalysisFailedError


class VerifyReleaseHandler(StepHandler[VerifyRelease]):
    step_type = VerifyRelease

    async def run(self, ctx: StepContext, step: VerifyRelease, index: int) -> str | None:
        from conveyor.releases.builder import verify_release

        await asyncio.to_thread(
            verify_release, ctx.rt.store, ctx.rt.paths, step.service, step.release
        )
        return None


class AwaitApprovalHandler(StepHandler[AwaitApproval]):
    step_type = AwaitApproval
    interruptible = True

    async def run(self, ctx: StepContext, step: AwaitApproval, index: int) -> str | None:
        from conveyor.engine.approvals import await_approval

        return await await_approval(ctx.rt, ctx.deployment_id, ctx.progress)


class HookHandler(StepHandler[RunHook]):
    step_type = RunHook

    async def run(self, ctx: StepContext, step: RunHook, index: int) -> str | None:
        from conveyor.engine.hooks import HookError, run_hooks

        deployment = ctx.rt.store.get_deployment(ctx.deployment_id)
        assert deployment is not None
        failures = await run_hooks(ctx.rt, step.hook, deployment, ctx.progress)
        if failures:
            raise HookError(
                "; ".join(failures), hint="nothing was changed; fix the hook and deploy again"
            )
        return f"{step.hook} hooks passed"


class MarkCurrentHandler(StepHandler[MarkCurrent]):
    step_type = MarkCurrent

    async def run(self, ctx: StepContext, step: MarkCurrent, index: int) -> str | None:
        if step.release is None:
            ctx.rt.store.clear_current(ctx.environment, step.service)
        else:
            ctx.rt.store.set_current(ctx.environment, step.service, step.release, ctx.deployment_id)
        return None


class PauseHandler(StepHandler[Pause]):
    step_type = Pause
    interruptible = True
    skippable = True

    async def run(self, ctx: StepContext, step: Pause, index: int) -> str | None:
        if step.seconds is None:
            reason = step.reason or "waiting for conveyor promote"
            raise Paused(f"paused: {reason}")
        await asyncio.sleep(step.seconds)
        return None


class AnalyzeHandler(StepHandler[Analyze]):
    step_type = Analyze
    interruptible = True
    skippable = True

    async def run(self, ctx: StepContext, step: Analyze, index: int) -> str | None:
        run = AnalysisRun(ctx.rt, ctx.environment, ctx.deployment_id, index, step, ctx.progress)
        verdict = await run.run()
        if verdict.action == "promote":
            return None
        if verdict.action == "abort":
            raise AnalysisFailedError(
                f"analysis {step.name} failed: {verdict.message}",
                hint=f"see why: conveyor explain {ctx.deployment_id}",
            )
        raise Paused(f"analysis {step.name} was inconclusive: {verdict.message}")


class StartAnalysisHandler(StepHandler[StartAnalysis]):
    step_type = StartAnalysis

    async def run(self, ctx: StepContext, step: StartAnalysis, index: int) -> str | None:
        ctx.start_background(step, index)
        return None


class StopAnalysisHandler(StepHandler[StopAnalysis]):
    step_type = StopAnalysis

    async def run(self, ctx: StepContext, step: StopAnalysis, index: int) -> str | None:
        ctx.check_background()
        await ctx.stop_background()
        return None


class KeepWarmHandler(StepHandler[KeepWarm]):
    step_type = KeepWarm

    async def run(self, ctx: StepContext, step: KeepWarm, index: int) -> str | None:
        from conveyor.engine import warm

        until = datetime.now(UTC) + timedelta(seconds=step.seconds)
        for name in step.instances:
            ctx.rt.store.set_instance_state(name, "warm", until)
        await asyncio.to_thread(warm.schedule, ctx.rt, ctx.environment)
        return None


class ShipHandler(StepHandler[ShipRelease]):
    step_type = ShipRelease

    async def run(self, ctx: StepContext, step: ShipRelease, index: int) -> str | None:
        # The ship steps right after this one start their transfers now (`ShipAhead`).
        await ctx.ship_ahead.ship(step, ctx.upcoming, lambda s: _transfer(ctx, s))
        release = ctx.rt.store.get_release(step.service, step.release)
        digest = release.digest[:12] if release is not None else "?"
        return f"{step.release} on {step.host}, digest {digest}"


async def _transfer(ctx: StepContext, step: ShipRelease) -> None:
    from pathlib import Path

    from conveyor.errors import TargetError

    release = ctx.rt.store.get_release(step.service, step.release)
    if release is None:
        raise TargetError(
            f"release {step.release} of {step.service} is not in the store",
            hint="it may have been pruned; build and deploy again",
        )
    await ctx.target.ship(step.host, Path(release.path), release.digest)
