"""The mixture SPRT: exact validity per interval, tolerance, time-varying shares."""

from __future__ import annotations

import math

import pytest

from conveyor.analysis import RateRatioTest
from conveyor.analysis.sequential import DEFAULT_RATIOS


def after_one_interval(x: int, n_c: int, y: int, n_b: int, tolerance: float = 0.0) -> float:
    test = RateRatioTest(tolerance)
    test.update(x, n_c, y, n_b)
    return test.e_value


@pytest.mark.parametrize(("n_c", "n_b", "events"), [(10, 190, 1), (10, 190, 7), (100, 100, 12)])
def test_e_value_has_expectation_one_under_the_binomial_null(
    n_c: int, n_b: int, events: int
) -> None:
    """Given the interval's total, the canary's share of events is Binomial(events, pi0)."""
    pi0 = n_c / (n_c + n_b)
    expectation = sum(
        math.comb(events, x)
        * pi0**x
        * (1 - pi0) ** (events - x)
        * after_one_interval(x, n_c, events - x, n_b)
        for x in range(events + 1)
    )
    assert expectation == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize(("n_c", "n_b"), [(5, 20), (20, 180), (50, 50)])
def test_e_value_expectation_is_at_most_one_with_per_request_errors(n_c: int, n_b: int) -> None:
    """Errors per request at the same rate: given the total, the canary's count is
    hypergeometric, which is dominated by the binomial in convex order (Hoeffding 1963)."""
    for events in range(1, min(n_c + n_b, 30)):
        expectation = sum(
            math.comb(n_c, x)
            * math.comb(n_b, events - x)
            / math.comb(n_c + n_b, events)
            * after_one_interval(x, n_c, events - x, n_b)
            for x in range(max(0, events - n_b), min(events, n_c) + 1)
        )
        assert expectation <= 1.0 + 1e-12


def test_matches_a_direct_computation_with_time_varying_shares() -> None:
    intervals = [(3, 10, 2, 190), (0, 40, 1, 160), (5, 100, 1, 100), (0, 0, 4, 200), (2, 20, 0, 0)]
    tolerance = 0.2
    test = RateRatioTest(tolerance)
    for interval in intervals:
        test.update(*interval)
    rho0 = 1 + tolerance
    direct = 0.0
    for r in DEFAULT_RATIOS:
        likelihood_ratio = 1.0
        for x, n_c, y, n_b in intervals:
            if n_c == 0 or n_b == 0:
                continue  # no information about the ratio
            pi0 = rho0 * n_c / (rho0 * n_c + n_b)
            pi1 = rho0 * r * n_c / (rho0 * r * n_c + n_b)
            likelihood_ratio *= (pi1 / pi0) ** x * ((1 - pi1) / (1 - pi0)) ** y
        direct += likelihood_ratio / len(DEFAULT_RATIOS)
    assert test.e_value == pytest.approx(direct, rel=1e-12)


def test_zero_events_and_empty_sides_change_nothing() -> None:
    test = RateRatioTest()
    test.update(0, 100, 0, 900)
    test.update(0, 0, 3, 900)
    test.update(2, 100, 0, 0)
    assert test.e_value == 1.0
    assert test.likeliest_ratio is None


def test_an_empty_baseline_side_is_still_evidence() -> None:
    """Errors on the canary only, while both serve: the e-value grows."""
    test = RateRatioTest()
    for _ in range(3):
        test.update(2, 20, 0, 180)
    assert test.e_value > 100
    assert test.likeliest_ratio == pytest.approx(128.0)


def expected_counts(ratio: float, tolerance: float, intervals: int) -> RateRatioTest:
    """A canary at `ratio` times the baseline's 1% error rate, fed its expected counts
    (the limit of infinite data): 10% of 100,000 requests per interval."""
    test = RateRatioTest(tolerance)
    for _ in range(intervals):
        test.update(round(10_000 * 0.01 * ratio), 10_000, 900, 90_000)
    return test


def test_tolerance_a_slightly_worse_canary_is_never_aborted() -> None:
    assert expected_counts(1.02, 0.2, 1000).log_e_value < -100
    assert expected_counts(1.2, 0.2, 1000).log_e_value < -100
    # Without tolerance the guarantee covers only ratios <= 1; the grid starts at
    # sqrt(2), so a 1.02x canary is still not aborted, but a 1.5x one is.
    assert expected_counts(1.02, 0.0, 1000).log_e_value < -100
    assert expected_counts(1.5, 0.0, 1000).rejects(0.01)


def test_a_clearly_worse_canary_is_aborted() -> None:
    assert expected_counts(2.0, 0.2, 3).rejects(0.01)
    assert expected_counts(1.6, 0.2, 20).rejects(0.01)


def test_validation() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        RateRatioTest(-0.1)
    with pytest.raises(ValueError, match="above 1"):
        RateRatioTest(ratios=(1.0, 2.0))
    with pytest.raises(ValueError, match="weights"):
        RateRatioTest(ratios=(2.0, 4.0), weights=(0.5, 0.6))
