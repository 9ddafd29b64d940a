"""What a step handler is and what the executor gives it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

from conveyor.engine.plan import Step

if TYPE_CHECKING:
    from conveyor.engine.plan import StartAnalysis
    from conveyor.engine.runtime import Runtime
    from conveyor.engine.ship_ahead import ShipAhead
    from conveyor.routers.base import Router
    from conveyor.targets.base import Target

Progress = Callable[[str], None]
S = TypeVar("S", bound=Step)


class StepContext(Protocol):
    """The executor, as its handlers see it: one deployment of one environment."""

    rt: Runtime
    environment: str
    deployment_id: str
    progress: Progress
    target: Target
    router: Router
    upcoming: Sequence[Step]  # the steps after the running one in this run
    ship_ahead: ShipAhead

    def start_background(self, step: StartAnalysis, index: int) -> None: ...

    async def stop_background(self) -> None: ...

    def check_background(self) -> None: ...


class StepHandler(Generic[S]):
    """Runs one step type; safe to run again after it partly or fully ran.

    `interruptible`: it waits on something outside Conveyor, so a request
    (pause, abort, promote) stops it at once; the others are short and finish
    first (a half-applied weight change helps nobody). `skippable`: `conveyor
    promote` ends it (a pause, an analysis).
    """

    step_type: ClassVar[type[Step]] = Step
    interruptible: ClassVar[bool] = False
    skippable: ClassVar[bool] = False

    def skip_reason(self, ctx: StepContext, step: S) -> str | None:
        """Why the step has nothing to do (said in the journal), or None to run it."""
        return None

    async def run(self, ctx: StepContext, step: S, index: int) -> str | None:
        """Do the step; returns a note for the journal (what a check found), or None."""
        raise NotImplementedError
