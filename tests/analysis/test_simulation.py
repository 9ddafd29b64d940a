"""Simulations with fixed seeds: false aborts of good canaries, time to abort bad ones.

Figures print with `pytest -s`; docs/analysis.md has those of larger runs
(`python -m tests.analysis.simulate 2000`).
"""

from __future__ import annotations

import math
import random
import statistics

from conveyor.analysis import Decision
from tests.analysis.simulate import (
    BASE_RATES,
    SHARES,
    analysis_spec,
    errors_bad,
    good_canaries_core,
    latency_bad,
    latency_good,
    run_canary,
    summary,
    time_to_fail,
)

ALPHA = 0.01


def noise_margin(runs: int, p: float = ALPHA) -> float:
    """Three standard deviations of an observed rate over `runs` if the true rate were `p`."""
    return 3 * math.sqrt(p * (1 - p) / runs)


def test_good_canaries_are_aborted_at_most_alpha_of_the_time() -> None:
    """(a) 2,400 good canaries: 6 base rates (0.1%-5%) x 4 shares (5%-50%) x 100, a check
    every second for 60 s at 200 req/s, without tolerance: the bare anytime guarantee."""
    aborts, runs = good_canaries_core(100, seed=11, tolerance=0.0)
    print(f"\ngood canaries, tolerance 0: {aborts}/{runs} aborted ({aborts / runs:.2%})")
    assert runs == 2400
    assert aborts / runs <= ALPHA + noise_margin(runs)


def test_good_canaries_with_the_default_tolerance() -> None:
    aborts, runs = good_canaries_core(50, seed=12, tolerance=0.2)
    print(f"\ngood canaries, tolerance 0.2: {aborts}/{runs} aborted ({aborts / runs:.2%})")
    assert aborts / runs <= ALPHA + noise_margin(runs)


def test_good_canaries_with_time_varying_share_and_base_rate() -> None:
    """The canary's weight ramps 5% -> 50%, and an outage multiplies both releases'
    error rate by 10 from 20 s to 30 s: conditioning on the total absorbs both."""

    def ramp(t: int, share: float) -> float:
        return 0.05 + 0.45 * (t - 1) / 59

    def outage(t: int, rate: float) -> float:
        return min(1.0, rate * 10) if 20 <= t < 30 else rate

    aborts, runs = good_canaries_core(
        100, seed=13, tolerance=0.0, shares=(0.0,), share_at=ramp, rate_at=outage
    )
    print(f"\ngood canaries, ramp + outage: {aborts}/{runs} aborted ({aborts / runs:.2%})")
    assert aborts / runs <= ALPHA + noise_margin(runs)


def test_good_canaries_end_to_end_with_latency() -> None:
    """Both comparisons through `Analysis`, latencies log-normal (median 20-50 ms)."""
    rng = random.Random(14)
    spec = analysis_spec(latency=True)
    runs = 120
    results = [
        run_canary(spec, *latency_good(rng), rng, share=SHARES[i % len(SHARES)])
        for i in range(runs)
    ]
    decisions = [a.verdict.decision for a in results]
    aborts = decisions.count(Decision.FAIL)
    print(f"\ngood canaries end to end: {aborts}/{runs} aborted")
    assert aborts / runs <= ALPHA + noise_margin(runs)
    assert decisions.count(Decision.PASS) == runs - aborts


def test_bad_canary_errors_are_aborted_within_seconds() -> None:
    """(b) 5% errors against 0.2%, canary share 10% of 200 req/s."""
    times = time_to_fail(300, 15, errors_bad, latency=False)
    print("\n5% vs 0.2% errors:", summary(times))
    done = [t for t in times if t is not None]
    assert len(done) == len(times)
    assert statistics.median(done) <= 6
    assert sum(t <= 15 for t in done) >= 0.95 * len(done)


def test_bad_canary_errors_with_both_tests() -> None:
    """The same with the latency test on too (alpha split in two): barely slower."""
    times = time_to_fail(200, 16, errors_bad, latency=True)
    print("\n5% vs 0.2% errors, both tests:", summary(times))
    done = [t for t in times if t is not None]
    assert len(done) == len(times)
    assert statistics.median(done) <= 6


def test_bad_canary_latency_is_aborted_within_seconds() -> None:
    """(b) +300 ms on a 20-50 ms baseline: the first interval sets the reference."""
    times = time_to_fail(200, 17, latency_bad, latency=True)
    print("\n+300 ms:", summary(times))
    done = [t for t in times if t is not None]
    assert len(done) == len(times)
    assert max(done) <= 3


def test_base_rates_cover_the_brief() -> None:
    assert min(BASE_RATES) == 0.001 and max(BASE_RATES) == 0.05
    assert min(SHARES) == 0.05 and max(SHARES) == 0.5
