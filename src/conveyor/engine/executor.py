"""Runs a plan's steps against the target and router, journaling each one.

The journal entry of a step is written before the step starts and after it
ends, so a killed executor leaves an exact record of where it stopped; every
step is idempotent, so `conveyor resume` simply runs the unfinished step again.
What a step does is its handler's (`engine.handlers`); the executor looks the
handler up, journals around it and watches for requests while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from conveyor.engine import failpoints
from conveyor.engine.analysis_run import AnalysisRun
from conveyor.engine.handlers import handler_for
from conveyor.engine.interruptions import (
    AbortRequested,
    Interrupted,
    Paused,
    Promoted,
    PromoteFull,
)
from conveyor.engine.plan import FORWARD, StartAnalysis, Step
from conveyor.engine.runtime import Runtime
from conveyor.engine.ship_ahead import ShipAhead
from conveyor.engine.step_hosts import live_step_hosts, where
from conveyor.errors import AnalysisFailedError, ConveyorError
from conveyor.store.records import (
    REQUEST_ABORT,
    REQUEST_PAUSE,
    REQUEST_PROMOTE,
    REQUEST_PROMOTE_FULL,
    STEP_DONE,
    STEP_FAILED,
    STEP_PAUSED,
    STEP_SKIPPED,
)

__all__ = [
    "AbortRequested",
    "Executor",
    "Interrupted",
    "Paused",
    "PromoteFull",
    "StepFailed",
]

REQUEST_POLL_S = 0.2  # how often a running step looks for pause/abort/promote requests

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
        self.target = rt.target_for(environment)
        self.environment = environment
        self.deployment_id = deployment_id
        self.progress = progress
        self.upcoming: Sequence[Step] = ()
        self.ship_ahead = ShipAhead()

    async def run(self, steps: Sequence[Step], first_index: int = 1) -> None:
        """Run `steps`, numbering them from `first_index` in the journal.

        Raises `StepFailed` when a step fails and an `Interrupted` when a
        request or a pause stops the run (the step is journaled as paused).
        """
        store = self.rt.store
        try:
            for offset, step in enumerate(steps):
                index = first_index + offset
                self.upcoming = steps[offset + 1 :]
                store.step_started(self.deployment_id, index, step.kind, step.describe())
                skipped = self._skip_reason(step)
                if skipped is not None:  # said once, by the step that found out
                    store.step_finished(self.deployment_id, index, STEP_SKIPPED, skipped)
                    continue
                on = where(live_step_hosts(step, store, self.environment))
                self.progress(f"[{step.service}] {step.describe()}{on}")
                failpoints.hit(f"executor.before_step:{index}")
                try:
                    note = await self._guarded(step, index)
                except Promoted as promoted:
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
            await self.ship_ahead.close()
            await self.stop_background()

    def _skip_reason(self, step: Step) -> str | None:
        """Why `step` has nothing to do (a release phase without pending migrations)."""
        return handler_for(step).skip_reason(self, step)

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

    def check_background(self) -> None:
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
        if request == REQUEST_PROMOTE and handler_for(step).skippable:
            store.set_request(self.deployment_id, None)
            raise Promoted(f"promoted by {who}: step skipped", who)

    async def _guarded(self, step: Step, index: int) -> str | None:
        """Execute a step while watching for requests and the background analysis;
        returns the step's note for the journal."""
        if step.phase != FORWARD:
            return await self.execute(step, index)
        self.check_background()
        self._take_request(step)
        if not handler_for(step).interruptible:
            note = await self.execute(step, index)
            self.check_background()
            return note
        task = asyncio.create_task(self.execute(step, index))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=REQUEST_POLL_S)
                if done:
                    return task.result()
                self.check_background()
                self._take_request(step)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConveyorError):
                    await task

    async def execute(self, step: Step, index: int = 0) -> str | None:
        """Run one step; safe to run again after it partly or fully ran. Returns a note
        for the journal (what a check found, which backup was taken), or None."""
        return await handler_for(step).run(self, step, index)
