"""Deploy strategies: immediate, recreate, rolling, blue-green and canary."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, PlainValidator, WithJsonSchema, field_validator

from conveyor.config.durations import Duration, describe_value, problem
from conveyor.config.models.addresses import ListenAddress
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.values import AnalysisName, HostBatch, Step, _int_validator

StrategyType = Literal["immediate", "recreate", "rolling", "blue_green", "canary"]
STRATEGY_TYPES: tuple[str, ...] = ("immediate", "recreate", "rolling", "blue_green", "canary")
PROGRESSIVE = ("blue_green", "canary")


def _check_pause(value: object) -> float | None:
    if value is None or value == {}:
        return None  # until `conveyor promote`
    try:
        return _validate_pause_duration(value)
    except ValueError:
        raise problem(
            f'expected a duration like "30s", or {{}} to wait for `conveyor promote`, got '
            f"{describe_value(value)}"
        ) from None


def _validate_pause_duration(value: object) -> float:
    from conveyor.config.durations import parse_duration

    if not isinstance(value, str):
        raise ValueError(value)
    return parse_duration(value)


PauseValue = Annotated[
    float | None,
    PlainValidator(_check_pause),
    WithJsonSchema(
        {"anyOf": [{"type": "string"}, {"type": "object", "maxProperties": 0}, {"type": "null"}]}
    ),
]


class StrategyConfig(_Model):
    """How a deploy replaces the running instances: immediate, recreate or rolling."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["immediate", "recreate", "rolling"] = Field(
        "rolling",
        description='"rolling" replaces instances a few at a time behind health checks; '
        '"immediate" starts all new instances, then switches traffic at once; '
        '"recreate" stops the old instances before starting new ones (downtime: for '
        "services that must never run twice).",
    )
    max_surge: Step = Field(
        1,
        description='How many instances may run above "replicas" during a rolling deploy: a '
        'number or a percentage of replicas like "25%".',
    )
    max_unavailable: Step = Field(
        0,
        description='How many instances may be missing below "replicas" during a rolling '
        'deploy: a number or a percentage of replicas like "25%".',
    )
    batch: HostBatch | None = Field(
        None,
        description="On a `target: ssh` environment, roll host by host: how many hosts (or "
        'what share of them, "25%") have their instances replaced together, new ones '
        "started beside the old before the old ones stop. Replaces max_surge and "
        "max_unavailable.",
    )
    min_ready: Duration = _duration_field(
        0.0, "How long a new instance must stay healthy before it counts as ready"
    )


class _ProgressiveBase(_Model):
    min_ready: Duration = _duration_field(
        0.0, "How long a new instance must stay healthy before it counts as ready"
    )
    rollback_window: Duration = _duration_field(
        600.0,
        "How long the previous release's instances stay warm (running, no traffic) after a "
        "successful promotion; `conveyor rollback` inside it is a weight flip",
    )
    abort_scale_down_delay: Duration = _duration_field(
        0.0,
        "How long the new release's instances keep running, without traffic, after an abort "
        "(for a look at their logs and state)",
    )


class BlueGreenStrategy(_ProgressiveBase):
    """Start the whole new set beside the old one, then switch all traffic at once."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["blue_green"] = Field(description='"blue_green".')
    preview: ListenAddress | None = Field(
        None,
        description='Address where the new set is exposed before the switch, "host:port" '
        "(for smoke tests and the pre-promotion analysis); null: no preview.",
    )
    auto_promote: bool = Field(
        True,
        description="Switch traffic as soon as the new set is healthy (and the pre-promotion "
        "analysis passed); false: wait for `conveyor promote`.",
    )
    pre_promotion_analysis: AnalysisName | None = Field(
        None,
        description="Analysis (from the top-level `analysis:`) run on the preview's traffic "
        "before the switch; needs `preview`.",
    )
    post_promotion_analysis: AnalysisName | None = Field(
        None,
        description="Analysis run after the switch, on all the traffic (thresholds only: "
        "nothing is left to compare with); a failure switches traffic back.",
    )


class CanaryStep(_Model):
    """One step of a canary: exactly one of set_weight, pause, analysis."""

    model_config = ConfigDict(extra="forbid")

    set_weight: Annotated[int, _int_validator(1, 100)] | None = Field(
        None, description="Share of the traffic (1-100 %) the new release receives."
    )
    pause: PauseValue = Field(
        None,
        description='Wait this long ("30s"), or until `conveyor promote` ({}).',
    )
    analysis: AnalysisName | None = Field(
        None, description="Run this analysis (from the top-level `analysis:`) and wait for it."
    )

    def model_post_init(self, context: Any, /) -> None:
        given = [k for k in ("set_weight", "pause", "analysis") if k in self.model_fields_set]
        if len(given) != 1:
            raise problem(
                "each canary step is one of set_weight: N, pause: DURATION | {}, "
                f"analysis: NAME; got {', '.join(given) or 'nothing'}"
            )

    @property
    def kind(self) -> str:
        return next(k for k in ("set_weight", "pause", "analysis") if k in self.model_fields_set)


class CanaryStrategy(_ProgressiveBase):
    """Move traffic to the new release step by step, judged by analyses."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["canary"] = Field(description='"canary".')
    steps: list[CanaryStep] = Field(
        default_factory=lambda: [
            CanaryStep(set_weight=10),
            CanaryStep(pause=60.0),
            CanaryStep(set_weight=50),
            CanaryStep(pause=60.0),
        ],
        description="What the rollout does, in order (at least one step); after the last step "
        "all traffic goes to the new release.",
    )
    baseline: bool = Field(
        False,
        description="Start fresh instances of the stable release that get the same share as "
        "the canary, so that analyses compare canary and baseline on equal traffic and age.",
    )
    analysis: AnalysisName | None = Field(
        None,
        description="Background analysis that runs from the first set_weight to the final "
        "promotion; a failure aborts the rollout.",
    )

    @field_validator("steps")
    @classmethod
    def _some_steps(cls, value: list[CanaryStep]) -> list[CanaryStep]:
        if not value:
            raise problem(
                "expected at least one step (like set_weight: 10), or leave steps out for "
                "the default 10% - pause 1m - 50% - pause 1m"
            )
        return value


StrategySpec = Annotated[
    StrategyConfig | BlueGreenStrategy | CanaryStrategy, Field(discriminator="type")
]


def _strategy_shorthand(value: object) -> object:
    if isinstance(value, str):
        return {"type": value}
    if isinstance(value, dict) and "type" not in value:
        return {"type": "rolling", **value}  # the default type may be left out
    return value


def _strategy_schema(schema: dict[str, Any]) -> None:
    # The file may say `strategy: rolling`; pydantic only sees the mapping form.
    ref = schema.pop("$ref", None)
    if ref is not None:
        schema["anyOf"] = [
            {"type": "string", "enum": list(STRATEGY_TYPES)},
            {"$ref": ref},
        ]
    one_of = schema.pop("oneOf", None)
    if one_of is not None:
        schema["anyOf"] = [{"type": "string", "enum": list(STRATEGY_TYPES)}, *one_of]
