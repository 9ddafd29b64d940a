"""The handler of the step that starts a missing accessory before any instance starts."""

from __future__ import annotations

from conveyor.engine import accessories
from conveyor.engine.handlers.base import StepContext, StepHandler
from conveyor.engine.plan import StartAccessory


class StartAccessoryHandler(StepHandler[StartAccessory]):
    step_type = StartAccessory

    async def run(self, ctx: StepContext, step: StartAccessory, index: int) -> str | None:
        """Start it unless it runs (a resumed deploy finds it running: nothing to do); one
        that runs with another config is left as it is, and said so."""
        result = await accessories.start(
            ctx.rt, ctx.environment, step.service, ctx.progress, ensured=True
        )
        note = result.describe(ctx.environment)
        if result.outcome == accessories.DIFFERS:
            ctx.progress(f"[{step.service}] warning: {note}")
        return note
