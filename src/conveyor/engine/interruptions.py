"""Why a running step stops early: a pause, a request, or `conveyor promote`."""

from __future__ import annotations


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


class Promoted(Interrupted):
    """`conveyor promote` ended the current pause or analysis."""
