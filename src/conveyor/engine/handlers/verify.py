"""Handler of the check after traffic (`verify:`): the bake, in `engine.bake`."""

from __future__ import annotations

from conveyor.engine.handlers.base import StepContext, StepHandler
from conveyor.engine.plan import Verify


class VerifyHandler(StepHandler[Verify]):
    """A bake waits on the release's traffic: `conveyor abort` stops it and rolls the deploy
    back, `conveyor promote` ends it early (the release is accepted as it is)."""

    step_type = Verify
    interruptible = True
    skippable = True

    async def run(self, ctx: StepContext, step: Verify, index: int) -> str | None:
        from conveyor.engine.bake import bake

        return await bake(ctx, step, index)
