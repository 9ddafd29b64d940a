"""The step handler registry: every step type has one handler that says how it runs."""

from __future__ import annotations

from conveyor.engine.handlers import HANDLERS
from conveyor.engine.plan import STEP_TYPES


def test_every_step_type_has_its_handler() -> None:
    assert set(HANDLERS) == set(STEP_TYPES)
    for kind, handler in HANDLERS.items():
        assert handler.step_type is STEP_TYPES[kind]


def test_what_a_request_may_interrupt_or_promote_skip() -> None:
    interruptible = {k for k, h in HANDLERS.items() if h.interruptible}
    assert interruptible == {
        "pause",
        "analyze",
        "wait_healthy",
        "drain",
        "smoke",
        "backup",
        "await_approval",
        "verify",
    }
    # `conveyor promote` ends a pause, an analysis or a bake, not the start of a background
    # analysis.
    assert {k for k, h in HANDLERS.items() if h.skippable} == {"pause", "analyze", "verify"}
