"""Table tests of the blue_green, canary and flip planners and the share arithmetic."""

from __future__ import annotations

import pytest

from conveyor.config.models import AnalysisTemplate, BlueGreenStrategy, CanaryStrategy
from conveyor.engine.plan import (
    Analyze,
    DrainInstances,
    KeepWarm,
    MarkCurrent,
    Pause,
    Preview,
    SetWeights,
    StartAnalysis,
    StartInstances,
    Step,
    StopAnalysis,
    StopInstances,
    WaitHealthy,
    steps_from_json,
    steps_to_json,
)
from conveyor.engine.strategies import (
    BASELINE,
    CANARY,
    STABLE,
    ObservedInstance,
    ServiceGoal,
    canary_size,
    plan_flip,
    plan_service,
)
from conveyor.engine.weights import share_weights


def stable(*names: str, release: str = "v1") -> tuple[ObservedInstance, ...]:
    return tuple(ObservedInstance(n, release, True, state="serving", role=STABLE) for n in names)


def goal(replicas: int, observed: tuple[ObservedInstance, ...], release: str = "v2") -> ServiceGoal:
    return ServiceGoal("api", release, replicas, observed, name_prefix="new")


def short(steps: list[Step]) -> list[str]:
    out = []
    for s in steps:
        if isinstance(s, SetWeights):
            out.append("weights " + ",".join(f"{n}={w}" for n, w in s.weights))
        elif isinstance(s, MarkCurrent):
            out.append(f"current {s.release}")
        elif isinstance(s, Pause):
            out.append(f"pause {s.seconds:g}" if s.seconds is not None else "pause None")
        elif isinstance(s, StartAnalysis):
            out.append(f"background {s.name}")
        elif isinstance(s, StopAnalysis):
            out.append(f"end background {s.name}")
        elif isinstance(s, Analyze):
            out.append(f"analysis {s.name} {s.canary}/{s.stable} {s.spec['comparative']}")
        elif isinstance(s, KeepWarm):
            out.append(f"warm {','.join(s.instances)} {s.seconds:g}")
        elif isinstance(s, WaitHealthy) and s.recheck:
            out.append("recheck " + ",".join(s.instances))
        else:
            out.append(f"{s.kind} " + ",".join(s.instances))  # type: ignore[attr-defined]
    return out


def shares(step: SetWeights, groups: dict[str, tuple[str, ...]]) -> dict[str, float]:
    total = sum(w for _, w in step.weights)
    weights = dict(step.weights)
    return {g: 100 * sum(weights.get(n, 0) for n in names) / total for g, names in groups.items()}


TEMPLATES = {
    "quick": AnalysisTemplate(thresholds=["error_rate < 1%"], duration=10.0),
    "thresholds": AnalysisTemplate(thresholds=["p95 < 500ms"], comparative=False),
}


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ([(10, ["c"]), (90, ["a", "b", "d"])], [1, 3, 3, 3]),
        ([(25, ["c1", "c2"]), (25, ["b1"]), (50, ["a", "b"])], [1, 1, 2, 2, 2]),
        ([(100, ["c1", "c2"]), (0, ["a"])], [1, 1, 0]),
        ([(33, ["c"]), (67, ["a", "b", "d"])], [99, 67, 67, 67]),
        ([(0, ["c"]), (100, ["a"])], [0, 1]),
    ],
)
def test_share_weights_give_exact_group_shares(
    groups: list[tuple[int, list[str]]], expected: list[int]
) -> None:
    assert [w for _, w in share_weights(groups)] == expected


def test_canary_size_follows_the_share() -> None:
    assert [canary_size(4, s) for s in (0, 1, 25, 26, 50, 100)] == [0, 1, 1, 2, 2, 4]


def test_canary_with_baseline_gets_equal_shares_then_promotes_and_keeps_stable_warm() -> None:
    strategy = CanaryStrategy(
        type="canary",
        baseline=True,
        analysis="thresholds",
        steps=[{"set_weight": 10}, {"analysis": "quick"}, {"set_weight": 50}, {"pause": {}}],
        rollback_window=600,
    )
    steps = plan_service(strategy, goal(3, stable("a", "b", "c")), analyses=TEMPLATES)
    assert short(steps) == [
        "start new-1",
        "wait_healthy new-1",
        "start new-b1",
        "wait_healthy new-b1",
        "weights new-1=3,new-b1=3,a=8,b=8,c=8",
        "background thresholds",
        "analysis quick v2/v1 " + str(TEMPLATES["quick"].spec_dict("baseline")["comparative"]),
        "start new-2",
        "wait_healthy new-2",
        "start new-b2",
        "wait_healthy new-b2",
        "weights new-1=1,new-2=1,new-b1=1,new-b2=1,a=0,b=0,c=0",
        "pause None",
        "end background thresholds",
        "start new-3",
        "wait_healthy new-3",
        "weights new-1=1,new-2=1,new-3=1,new-b1=0,new-b2=0,a=0,b=0,c=0",
        "current v2",
        "drain new-b1,new-b2",
        "stop new-b1,new-b2",
        "warm a,b,c 600",
    ]
    first = next(s for s in steps if isinstance(s, SetWeights))
    assert shares(first, {"canary": ("new-1",), "baseline": ("new-b1",)}) == {
        "canary": 10.0,
        "baseline": 10.0,
    }


def test_canary_without_baseline_compares_with_stable_and_stops_old_without_window() -> None:
    strategy = CanaryStrategy(
        type="canary", steps=[{"set_weight": 20}, {"pause": "30s"}], rollback_window=0
    )
    steps = plan_service(strategy, goal(2, stable("a", "b")), analyses=TEMPLATES)
    assert short(steps) == [
        "start new-1",
        "wait_healthy new-1",
        "weights new-1=1,a=2,b=2",
        "pause 30",
        "start new-2",
        "wait_healthy new-2",
        "weights new-1=1,new-2=1,a=0,b=0",
        "current v2",
        "drain a,b",
        "stop a,b",
    ]
    weights = next(s for s in steps if isinstance(s, SetWeights))
    assert shares(weights, {"canary": ("new-1",)}) == {"canary": 20.0}


def test_canary_analysis_against_stable_by_default() -> None:
    strategy = CanaryStrategy(type="canary", steps=[{"set_weight": 10}, {"analysis": "quick"}])
    steps = plan_service(strategy, goal(2, stable("a", "b")), analyses=TEMPLATES)
    analysis = next(s for s in steps if isinstance(s, Analyze))
    assert analysis.spec["comparative"]["against"] == "stable"


def test_first_deploy_has_nothing_to_compare_and_starts_all_at_once() -> None:
    strategy = CanaryStrategy(type="canary", steps=[{"set_weight": 10}, {"pause": {}}])
    assert short(plan_service(strategy, goal(2, ()), analyses=TEMPLATES)) == [
        "start new-1,new-2",
        "wait_healthy new-1,new-2",
        "weights new-1=1,new-2=1",
        "current v2",
    ]


def test_blue_green_previews_analyses_waits_switches_and_keeps_blue_warm() -> None:
    strategy = BlueGreenStrategy(
        type="blue_green",
        preview="127.0.0.1:8081",
        auto_promote=False,
        pre_promotion_analysis="quick",
        post_promotion_analysis="quick",
        rollback_window=300,
    )
    steps = plan_service(strategy, goal(2, stable("a", "b")), analyses=TEMPLATES)
    pre = TEMPLATES["quick"].spec_dict("stable")["comparative"]
    assert short(steps) == [
        "start new-1,new-2",
        "wait_healthy new-1,new-2",
        "preview new-1,new-2",
        f"analysis quick v2/v1 {pre}",
        "pause None",
        "weights new-1=1,new-2=1,a=0,b=0",
        "current v2",
        "preview ",
        "analysis quick v2/v1 None",
        "warm a,b 300",
    ]
    assert next(s for s in steps if isinstance(s, Analyze)).preview is True
    assert [s for s in steps if isinstance(s, Preview)][-1].instances == ()


def test_flip_back_after_an_aborted_canary_is_one_weight_change_first() -> None:
    observed = (
        *stable("a", "b"),
        ObservedInstance("c1", "v2", True, state="serving", role=CANARY),
        ObservedInstance("b1", "v1", True, state="serving", role=BASELINE),
        ObservedInstance("c2", "v2", False, state="starting", role=CANARY),
    )
    steps = plan_flip(ServiceGoal("api", "v1", 2, observed, name_prefix="r"), scale_down_delay=5)
    assert short(steps) == [
        "stop c2",
        "weights a=1,b=1,c1=0,b1=0",
        "current v1",
        "pause 5",
        "drain c1,b1",
        "stop c1,b1",
    ]


def test_rollback_inside_the_window_checks_warm_instances_and_keeps_the_new_ones_warm() -> None:
    observed = (
        ObservedInstance("a", "v1", False, state="warm"),
        ObservedInstance("b", "v1", False, state="warm"),
        *stable("n1", "n2", release="v2"),
    )
    steps = plan_flip(ServiceGoal("api", "v1", 2, observed, name_prefix="r"), keep_warm=600)
    assert short(steps) == [
        "recheck a,b",
        "weights a=1,b=1,n1=0,n2=0",
        "current v1",
        "warm n1,n2 600",
    ]


def test_rollback_with_one_warm_instance_left_rechecks_it_and_gates_the_new_one() -> None:
    observed = (ObservedInstance("a", "v1", False, state="warm"), *stable("n1", release="v2"))
    steps = plan_flip(ServiceGoal("api", "v1", 2, observed, name_prefix="r"), keep_warm=600)
    assert short(steps) == [
        "start r-1",
        "recheck a",
        "wait_healthy r-1",
        "weights a=1,r-1=1,n1=0",
        "current v1",
        "warm n1 600",
    ]


def test_rollback_outside_the_window_starts_the_release_at_once() -> None:
    steps = plan_flip(ServiceGoal("api", "v1", 2, stable("n1", "n2", release="v2"), "r"))
    assert short(steps) == [
        "start r-1,r-2",
        "wait_healthy r-1,r-2",
        "weights r-1=1,r-2=1,n1=0,n2=0",
        "current v1",
        "drain n1,n2",
        "stop n1,n2",
    ]


def test_progressive_steps_survive_the_journal() -> None:
    strategy = CanaryStrategy(
        type="canary",
        baseline=True,
        analysis="thresholds",
        steps=[{"set_weight": 10}, {"analysis": "quick"}, {"pause": "1m"}],
    )
    steps = plan_service(strategy, goal(2, stable("a", "b")), analyses=TEMPLATES)
    assert steps_from_json(steps_to_json(steps)) == steps
    flip = plan_flip(ServiceGoal("api", "v1", 1, stable("x", release="v2"), "r"), keep_warm=1)
    assert steps_from_json(steps_to_json(flip)) == flip
    assert {type(s) for s in steps} >= {StartInstances, WaitHealthy, StartAnalysis, DrainInstances}
    assert StopInstances in {type(s) for s in steps}
