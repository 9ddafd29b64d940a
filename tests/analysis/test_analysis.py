"""`Analysis` verdicts and their explanations, records and replay, on hand-made snapshots."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from conveyor.analysis import (
    Analysis,
    AnalysisSpec,
    AnalysisSpecError,
    Decision,
    Histogram,
    ReleaseStats,
    Verdict,
    replay,
)

ZERO = ReleaseStats(0, 0, Histogram.empty())


class Feed:
    """Cumulative counters of the canary and the other release, one snapshot per second."""

    def __init__(self, analysis: Analysis, other: str = "baseline") -> None:
        self.analysis = analysis
        self.other = other
        self.time = 0.0
        self.canary = ZERO
        self.baseline = ZERO
        self.verdict = analysis.observe(0.0, self.snapshot())

    def snapshot(self) -> dict[str, ReleaseStats]:
        return {"canary": self.canary, self.other: self.baseline}

    def second(
        self,
        canary: tuple[int, int, Sequence[float]],
        baseline: tuple[int, int, Sequence[float]],
    ) -> Verdict:
        self.time += 1
        self.canary = self.canary.advance(*canary)
        self.baseline = self.baseline.advance(*baseline)
        self.verdict = self.analysis.observe(self.time, self.snapshot())
        return self.verdict


def spec(**changes: object) -> AnalysisSpec:
    return AnalysisSpec.from_dict({"duration": "10s", "max_duration": "20s", **changes})


def test_comparative_error_rate_failure_is_explained() -> None:
    feed = Feed(Analysis(spec(comparative={"latency": False})))
    assert feed.verdict.decision is Decision.CONTINUE
    assert feed.verdict.message == "CONTINUE at 0s of 10s: first snapshot, counting from here"
    verdict = feed.second((500, 24, ()), (1000, 2, ()))
    assert verdict.decision is Decision.FAIL
    assert verdict.action == "abort"
    [check] = verdict.checks
    assert check.message == (
        "canary 5xx rate 4.8% (24/500) vs baseline 0.2% (2/1000);"
        " e-value 1.4e+07 >= 1/alpha = 100: FAIL"
    )
    assert verdict.message == f"FAIL after 1s: {check.message}"
    assert (check.name, check.decision, check.statistic) == (
        "error_rate vs baseline",
        "fail",
        "e_value",
    )
    assert check.value == pytest.approx(1.4e7, rel=0.05)
    assert check.observed["canary"] == {"requests": 500, "bad": 24, "rate": 0.048}
    assert check.observed["baseline"] == {"requests": 1000, "bad": 2, "rate": 0.002}
    assert check.observed["rate_ratio"] == pytest.approx(24.0)
    assert check.threshold == {
        "against": "baseline",
        "alpha": 0.01,
        "tests": 1,
        "reject_at": 100.0,
        "max_relative_increase": 0.2,
    }


def test_alpha_is_shared_by_the_error_and_latency_tests() -> None:
    feed = Feed(Analysis(spec(min_requests=50)))
    verdict = feed.second((100, 1, [30.0] * 100), (900, 2, [30.0] * 900))
    assert [c.message for c in verdict.checks] == [
        "canary 5xx rate 1% (1/100) vs baseline 0.2% (2/900); e-value 0.836 < 2/alpha = 200: OK",
        "canary p95 29.9 ms vs baseline 29.9 ms; waiting for 100 baseline latencies to set the"
        " reference (0 so far): PENDING",
    ]
    assert verdict.message == (
        "CONTINUE at 1s of 10s: 1 of 2 checks ok; pending: latency vs baseline;"
        " canary 100 requests, baseline 900 requests"
    )


def test_comparative_latency_failure_is_explained() -> None:
    feed = Feed(Analysis(spec(min_requests=50)))
    feed.second((100, 0, [30.0] * 95 + [40.0] * 5), (900, 0, [30.0] * 855 + [40.0] * 45))
    verdict = feed.second((100, 0, [330.0] * 100), (900, 0, [30.0] * 855 + [40.0] * 45))
    assert verdict.decision is Decision.FAIL
    check = verdict.checks[1]
    assert check.message == (
        "canary p95 345 ms vs baseline 30 ms; requests over the baseline's p95 30 ms"
        " (canary: over 35 ms): canary 100% (100/100) vs baseline 5% (45/900);"
        " e-value 2.3e+55 >= 2/alpha = 200: FAIL"
    )
    # The reference is the baseline's p95 before the interval (30 ms), rounded up to
    # a bound; the canary's bound is 10% above it, rounded up (33 ms -> 35 ms).
    assert check.observed["reference_ms"] == 30.0
    assert check.observed["canary_bound_ms"] == 35.0
    assert check.threshold["quantile"] == 0.95


def test_thresholds_wait_for_min_requests_then_fail_on_a_breach() -> None:
    feed = Feed(Analysis(spec(thresholds=["error_rate < 1%", "p95 < 500ms"], comparative=None)))
    verdict = feed.second((40, 2, [600.0] * 40), (0, 0, ()))
    assert [c.message for c in verdict.checks] == [
        "canary 5xx rate 5% (2/40); threshold error_rate < 1%: PENDING"
        " (canary has 40 of min_requests 100)",
        "canary p95 595 ms (40 requests); threshold p95 < 500ms: PENDING"
        " (canary has 40 of min_requests 100)",
    ]
    verdict = feed.second((60, 0, [100.0] * 60), (0, 0, ()))
    assert [c.message for c in verdict.checks] == [
        "canary 5xx rate 2% (2/100); threshold error_rate < 1%: FAIL",
        "canary p95 588 ms (100 requests); threshold p95 < 500ms: FAIL",
    ]
    assert verdict.message == (
        "FAIL after 2s: canary 5xx rate 2% (2/100); threshold error_rate < 1%: FAIL"
        " (and 1 more failing)"
    )
    assert verdict.checks[0].observed == {"requests": 100, "errors": 2, "error_rate": 0.02}
    assert verdict.checks[0].threshold == {
        "expression": "error_rate < 1%",
        "metric": "error_rate",
        "op": "<",
        "value": 0.01,
    }


def good_second(feed: Feed) -> Verdict:
    return feed.second((20, 0, [30.0] * 20), (180, 0, [30.0] * 180))


def test_pass_after_duration_with_enough_data() -> None:
    feed = Feed(Analysis(spec(thresholds=["error_rate < 1%", "requests >= 100"])))
    for _ in range(9):
        assert good_second(feed).decision is Decision.CONTINUE
    verdict = good_second(feed)
    assert verdict.decision is Decision.PASS
    assert verdict.action == "promote"
    assert verdict.message == (
        "PASS after 10s: 4 checks ok; canary 200 requests, baseline 1800 requests"
    )
    assert [c.message for c in verdict.checks] == [
        "canary 5xx rate 0% (0/200); threshold error_rate < 1%: OK",
        "canary requests 200; threshold requests >= 100: OK",
        "canary 5xx rate 0% (0/200) vs baseline 0% (0/1800); e-value 1 < 2/alpha = 200: OK",
        "canary p95 29.9 ms vs baseline 29.9 ms; requests over the baseline's p95 30 ms"
        " (canary: over 35 ms): canary 0% (0/180) vs baseline 0% (0/1620);"
        " e-value 1 < 2/alpha = 200: OK",
    ]


def test_too_little_traffic_is_not_a_pass() -> None:
    feed = Feed(Analysis(spec()))
    for _ in range(10):
        verdict = feed.second((5, 0, [30.0] * 5), (45, 0, [30.0] * 45))
    assert verdict.decision is Decision.CONTINUE
    assert verdict.message == (
        "CONTINUE at 10s of 10s: 0 of 2 checks ok; too little traffic: canary has 50 of 100;"
        " pending: error_rate vs baseline, latency vs baseline;"
        " canary 50 requests, baseline 450 requests"
    )
    for _ in range(10):
        verdict = feed.second((4, 0, [30.0] * 4), (45, 0, [30.0] * 45))
    assert verdict.decision is Decision.INCONCLUSIVE
    assert verdict.action == "pause"
    assert verdict.message == (
        "INCONCLUSIVE after 20s (max_duration 20s): too little traffic: canary has 90 of 100;"
        " pending: error_rate vs baseline, latency vs baseline; on_inconclusive: pause"
    )


def test_inconclusive_without_traffic() -> None:
    feed = Feed(Analysis(spec(on_inconclusive="fail", thresholds=["p95 < 1s"])))
    for _ in range(20):
        verdict = feed.second((0, 0, ()), (0, 0, ()))
    assert verdict.decision is Decision.INCONCLUSIVE
    assert verdict.action == "abort"
    assert verdict.message == (
        "INCONCLUSIVE after 20s (max_duration 20s): too little traffic: canary has 0,"
        " baseline has 0 of 100; pending: p95 < 1s, error_rate vs baseline,"
        " latency vs baseline; on_inconclusive: fail"
    )
    assert verdict.checks[0].message == (
        "canary p95 n/a (0 requests); threshold p95 < 1s: PENDING"
        " (canary has 0 of min_requests 100)"
    )


def test_final_verdicts_stay_and_bad_snapshots_are_refused() -> None:
    feed = Feed(Analysis(spec(comparative={"latency": False})))
    final = feed.second((500, 24, ()), (1000, 2, ()))
    assert feed.second((10, 0, ()), (10, 0, ())) is final
    assert len(feed.analysis.records) == 2
    analysis = Analysis(spec())
    analysis.observe(5.0, {"canary": ZERO, "baseline": ZERO})
    with pytest.raises(ValueError, match="must increase"):
        analysis.observe(5.0, {"canary": ZERO, "baseline": ZERO})
    with pytest.raises(ValueError, match="no counters for baseline"):
        analysis.observe(6.0, {"canary": ZERO, "stable": ZERO})
    with pytest.raises(ValueError, match="finite"):
        analysis.observe(float("nan"), {"canary": ZERO, "baseline": ZERO})


def test_compares_with_stable_at_unequal_shares() -> None:
    feed = Feed(Analysis(spec(comparative={"against": "stable"}, min_requests=50)), "stable")
    for _ in range(10):
        verdict = feed.second((10, 0, [30.0] * 10), (190, 1, [30.0] * 190))
    assert verdict.decision is Decision.PASS
    assert verdict.checks[0].name == "error_rate vs stable"
    feed = Feed(Analysis(spec(comparative={"against": "stable"}, min_requests=50)), "stable")
    for _ in range(10):
        verdict = feed.second((10, 1, [30.0] * 10), (190, 0, [30.0] * 190))
        if verdict.final:
            break
    assert verdict.decision is Decision.FAIL
    assert verdict.elapsed <= 3


def test_counter_reset_does_not_count_backwards() -> None:
    analysis = Analysis(spec(comparative={"latency": False}, min_requests=10))
    analysis.observe(0.0, {"canary": ReleaseStats(1000, 5), "baseline": ReleaseStats(9000, 40)})
    analysis.observe(1.0, {"canary": ReleaseStats(1020, 5), "baseline": ReleaseStats(9180, 40)})
    # The router restarted: counters from zero again.
    verdict = analysis.observe(
        2.0, {"canary": ReleaseStats(20, 0), "baseline": ReleaseStats(180, 1)}
    )
    assert verdict.checks[0].observed["canary"]["requests"] == 40
    assert verdict.checks[0].observed["baseline"] == {"requests": 360, "bad": 1, "rate": 1 / 360}


def record_a_canary(thresholds: list[str], error_every: int) -> Analysis:
    """A canary with one error every `error_every` requests (about), latency 30 ms."""
    feed = Feed(Analysis(spec(thresholds=thresholds, comparative=None)))
    errors = 0
    for second in range(1, 11):
        due = (second * 20) // error_every - errors
        errors += due
        feed.second((20, due, [30.0] * 20), (180, 0, [30.0] * 180))
        if feed.verdict.final:
            break
    return feed.analysis


def test_records_are_json_and_replay_reproduces_them() -> None:
    original = record_a_canary(["error_rate < 5%"], error_every=33)  # about 3%
    assert original.verdict.decision is Decision.PASS
    records = json.loads(json.dumps([r.to_dict() for r in original.records]))
    assert records[0]["spec"] == original.spec.to_dict()
    assert all("spec" not in r for r in records[1:])
    assert records[3]["releases"]["canary"] == {
        "requests": 60,
        "errors": 1,
        "latency_ms": {"offset": 54, "counts": [60]},  # 30 ms is the 55th bound
    }
    again = replay(records)
    assert [r.verdict.to_dict() for r in again.records] == [r["verdict"] for r in records]
    assert replay(list(original.records)).verdict == original.verdict


def test_replay_with_a_changed_threshold_flips_the_verdict() -> None:
    records = [r.to_dict() for r in record_a_canary(["error_rate < 5%"], error_every=33).records]
    stricter = replay(records, ["error_rate<2%"])
    assert stricter.verdict.decision is Decision.FAIL
    assert stricter.verdict.message == (
        "FAIL after 5s: canary 5xx rate 3% (3/100); threshold error_rate < 2%: FAIL"
    )
    assert [str(t) for t in stricter.spec.thresholds] == ["error_rate < 2%"]

    failed = [r.to_dict() for r in record_a_canary(["error_rate < 2%"], error_every=33).records]
    assert replay(failed).verdict.decision is Decision.FAIL
    looser = replay(failed, ["error_rate<5%"])
    # The recording stops where the original failed: the replay cannot decide yet.
    assert looser.verdict.decision is Decision.CONTINUE
    assert replay(failed, ["error_rate<5%", "duration=5s"]).verdict.decision is Decision.PASS


def test_replay_needs_a_spec() -> None:
    records = [r.to_dict() for r in record_a_canary([], error_every=1000).records]
    with pytest.raises(AnalysisSpecError, match="no spec"):
        replay(records[1:])
    assert replay(records[1:], spec=spec(comparative=None)).verdict.decision is Decision.CONTINUE
