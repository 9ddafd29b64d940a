"""Hooks: commands run around deploys."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from conveyor.config.durations import Duration
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.values import Command


class HooksConfig(_Model):
    """Commands run around deploys, in the project's directory, with CONVEYOR_* variables."""

    model_config = ConfigDict(extra="forbid")

    pre_deploy: list[Command] = Field(
        default_factory=list,
        description="Before anything changes; a failure stops the deploy.",
    )
    post_deploy: list[Command] = Field(
        default_factory=list, description="After a deploy succeeded (a failure is reported)."
    )
    on_failure: list[Command] = Field(
        default_factory=list,
        description="After a deploy failed, was rolled back, aborted or rejected.",
    )
    on_rollback: list[Command] = Field(
        default_factory=list,
        description="After the previous releases were restored: `conveyor rollback`, or a "
        "deploy rolled back or aborted.",
    )
    timeout: Duration = _duration_field(300.0, "How long one hook command may run")
