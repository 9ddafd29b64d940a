"""Simulated canaries for the analysis tests, and the figures of docs/analysis.md.

Traffic: `total_rps` requests per second split by weight (the canary gets
`round(total_rps * share)`, the other release the rest), a snapshot every
second, errors binomial per request, latencies log-normal. Standard library
only: the binomial sampler inverts the CDF (fast for the small means here).

`python -m tests.analysis.simulate` prints the figures with larger runs.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from conveyor.analysis import (
    DEFAULT_BOUNDS_MS,
    Analysis,
    AnalysisSpec,
    ComparativeSpec,
    Decision,
    Histogram,
    RateRatioTest,
    ReleaseStats,
)

BASE_RATES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
SHARES = (0.05, 0.1, 0.2, 0.5)


def binomial(n: int, p: float, rng: random.Random) -> int:
    """A Binomial(n, p) draw by inversion: O(n p) steps."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    q = 1 - p
    s = p / q
    a = (n + 1) * s
    r = q**n
    u = rng.random()
    x = 0
    while u > r and x < n:
        u -= r
        x += 1
        r *= a / x - s
    return x


def good_canaries_core(
    runs_per_cell: int,
    seed: int,
    *,
    tolerance: float,
    alpha: float = 0.01,
    seconds: int = 60,
    total_rps: int = 200,
    base_rates: Sequence[float] = BASE_RATES,
    shares: Sequence[float] = SHARES,
    share_at: Callable[[int, float], float] | None = None,
    rate_at: Callable[[int, float], float] | None = None,
) -> tuple[int, int]:
    """(false aborts, runs) of the sequential error-rate test on canaries as good as the baseline.

    Every (base rate, share) cell runs `runs_per_cell` canaries; `share_at(t,
    share)` and `rate_at(t, rate)` vary the canary's share and both releases'
    error rate over time.
    """
    rng = random.Random(seed)
    aborts = runs = 0
    for p in base_rates:
        for share in shares:
            for _ in range(runs_per_cell):
                runs += 1
                test = RateRatioTest(tolerance)
                for t in range(1, seconds + 1):
                    s = share if share_at is None else share_at(t, share)
                    q = p if rate_at is None else rate_at(t, p)
                    n_c = round(total_rps * s)
                    n_b = total_rps - n_c
                    test.update(binomial(n_c, q, rng), n_c, binomial(n_b, q, rng), n_b)
                    if test.rejects(alpha):
                        aborts += 1
                        break
    return aborts, runs


_TABLE_BITS = 16


@functools.cache
def lognormal_buckets(median_ms: float, sigma: float, shift_ms: float = 0.0) -> bytes:
    """A sampling table of `shift + LogNormal(median, sigma)` over the default buckets.

    Bucket `i` fills `round(P(latency <= bound i) * 2**16)` entries minus those
    of the buckets below, so a uniform 16-bit number picks a bucket with the
    right probability, to within 1/65536.
    """
    size = 1 << _TABLE_BITS
    table = bytearray()
    for index, bound in enumerate((*DEFAULT_BOUNDS_MS, math.inf)):
        x = bound - shift_ms
        if x <= 0:
            p = 0.0
        elif math.isinf(x):
            p = 1.0
        else:
            p = 0.5 * (1 + math.erf(math.log(x / median_ms) / (sigma * 2**0.5)))
        table.extend(bytes([index]) * (round(p * size) - len(table)))
    return bytes(table)


def sample_histogram(table: bytes, n: int, rng: random.Random) -> Histogram:
    """A histogram of `n` latencies drawn from a `lognormal_buckets` table (C-speed loops)."""
    draws = array("H")
    draws.frombytes(rng.randbytes(2 * n))
    counts = [0] * (len(DEFAULT_BOUNDS_MS) + 1)
    for bucket, count in Counter(map(table.__getitem__, draws)).items():
        counts[bucket] = count
    return Histogram(DEFAULT_BOUNDS_MS, tuple(counts))


@dataclass
class Release:
    """A release under simulated traffic: error probability and latency distribution."""

    error_rate: float
    latency: bytes | None = None  # a `lognormal_buckets` table
    stats: ReleaseStats = field(default_factory=lambda: ReleaseStats(0, 0))

    def __post_init__(self) -> None:
        if self.latency is not None:
            self.stats = ReleaseStats(0, 0, Histogram.empty())

    def serve(self, n: int, rng: random.Random) -> ReleaseStats:
        errors = binomial(n, self.error_rate, rng)
        latency = self.stats.latency
        if self.latency is not None and latency is not None:
            latency = latency + sample_histogram(self.latency, n, rng)
        self.stats = ReleaseStats(self.stats.requests + n, self.stats.errors + errors, latency)
        return self.stats


def run_canary(
    spec: AnalysisSpec,
    canary: Release,
    baseline: Release,
    rng: random.Random,
    *,
    share: float,
    seconds: int = 60,
    total_rps: int = 200,
) -> Analysis:
    """Feed an `Analysis` one snapshot per second until it is final or `seconds` pass."""
    analysis = Analysis(spec)
    analysis.observe(0.0, {"canary": canary.stats, "baseline": baseline.stats})
    n_c = round(total_rps * share)
    for t in range(1, seconds + 1):
        snapshot = {
            "canary": canary.serve(n_c, rng),
            "baseline": baseline.serve(total_rps - n_c, rng),
        }
        if analysis.observe(float(t), snapshot).final:
            break
    return analysis


def analysis_spec(*, latency: bool, error_rate: bool = True, seconds: int = 60) -> AnalysisSpec:
    return AnalysisSpec(
        comparative=ComparativeSpec(error_rate=error_rate, latency=latency),
        duration=float(seconds),
        max_duration=float(seconds),
        min_requests=50,
    )


def time_to_fail(
    runs: int,
    seed: int,
    make: Callable[[random.Random], tuple[Release, Release]],
    *,
    latency: bool,
    share: float = 0.1,
    seconds: int = 30,
) -> list[float | None]:
    """Seconds from the first snapshot to FAIL for each run (None: not failed in time)."""
    rng = random.Random(seed)
    spec = analysis_spec(latency=latency, seconds=seconds)
    times: list[float | None] = []
    for _ in range(runs):
        canary, baseline = make(rng)
        analysis = run_canary(spec, canary, baseline, rng, share=share, seconds=seconds)
        failed = analysis.verdict.decision is Decision.FAIL
        times.append(analysis.verdict.elapsed if failed else None)
    return times


def errors_bad(rng: random.Random) -> tuple[Release, Release]:
    """5% errors on the canary against 0.2% on the baseline."""
    return Release(0.05), Release(0.002)


def latency_bad(rng: random.Random) -> tuple[Release, Release]:
    """+300 ms on the canary, baseline log-normal with a median of 20-50 ms."""
    median = rng.randint(20, 50)
    return (
        Release(0.002, lognormal_buckets(median, 0.35, shift_ms=300)),
        Release(0.002, lognormal_buckets(median, 0.35)),
    )


def latency_good(rng: random.Random) -> tuple[Release, Release]:
    median = rng.randint(20, 50)
    p = rng.choice(BASE_RATES)
    return (
        Release(p, lognormal_buckets(median, 0.35)),
        Release(p, lognormal_buckets(median, 0.35)),
    )


def summary(times: Sequence[float | None]) -> str:
    done = sorted(t for t in times if t is not None)
    if not done:
        return f"none of {len(times)} failed"
    deciles = statistics.quantiles(done, n=10, method="inclusive") if len(done) > 1 else done * 9
    return (
        f"{len(done)}/{len(times)} failed; min {done[0]:g}s, median {statistics.median(done):g}s,"
        f" p90 {deciles[8]:g}s, max {done[-1]:g}s"
    )


def errors_times(base: float, ratio: float) -> Callable[[random.Random], tuple[Release, Release]]:
    return lambda rng: (Release(min(1.0, base * ratio)), Release(base))


def latency_shift(shift_ms: float) -> Callable[[random.Random], tuple[Release, Release]]:
    def make(rng: random.Random) -> tuple[Release, Release]:
        median = rng.randint(20, 50)
        return (
            Release(0.002, lognormal_buckets(median, 0.35, shift_ms=shift_ms)),
            Release(0.002, lognormal_buckets(median, 0.35)),
        )

    return make


def main() -> None:  # pragma: no cover - prints the figures of docs/analysis.md
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(f"## false aborts ({runs} per cell, 24 cells, 60 s, 200 req/s)")
    for tolerance in (0.0, 0.2):
        aborts, n = good_canaries_core(runs, 1, tolerance=tolerance)
        print(f"good canaries, tolerance {tolerance}: {aborts}/{n} = {aborts / n:.3%} aborted")
        for share in SHARES:
            a, m = good_canaries_core(
                max(1, runs // 4), 10 + int(share * 100), tolerance=tolerance, shares=(share,)
            )
            print(f"  share {share:.0%}: {a}/{m} = {a / m:.3%}")

    def ramp(t: int, share: float) -> float:
        return 0.05 + 0.45 * (t - 1) / 59

    def outage(t: int, rate: float) -> float:
        return min(1.0, rate * 10) if 20 <= t < 30 else rate

    aborts, n = good_canaries_core(
        4 * runs, 2, tolerance=0.0, shares=(0.0,), share_at=ramp, rate_at=outage
    )
    print(
        f"good canaries, share ramp 5%->50% + 10x outage, tolerance 0: {aborts}/{n} = {aborts / n:.3%}"
    )
    rng = random.Random(3)
    spec = analysis_spec(latency=True)
    e2e = 4 * runs
    results = [run_canary(spec, *latency_good(rng), rng, share=SHARES[i % 4]) for i in range(e2e)]
    fails = sum(a.verdict.decision is Decision.FAIL for a in results)
    print(
        f"good canaries end to end (errors + latency, default spec): {fails}/{e2e} = {fails / e2e:.3%}"
    )
    print(f"## time to FAIL ({4 * runs} runs each, 200 req/s)")
    print(
        "5% vs 0.2%, share 10%, error test only:",
        summary(time_to_fail(4 * runs, 4, errors_bad, latency=False)),
    )
    print(
        "5% vs 0.2%, share 10%, both tests:",
        summary(time_to_fail(4 * runs, 7, errors_bad, latency=True)),
    )
    print(
        "5% vs 0.2%, share 5%, both tests:",
        summary(time_to_fail(4 * runs, 6, errors_bad, latency=True, share=0.05)),
    )
    print(
        "+300 ms, share 10%, both tests:",
        summary(time_to_fail(4 * runs, 5, latency_bad, latency=True)),
    )
    print(f"## power within 60 s, share 10%, both tests ({runs} runs each)")
    for base in (0.002, 0.01):
        for ratio in (1.5, 2.0, 3.0, 5.0):
            times = time_to_fail(runs, 8, errors_times(base, ratio), latency=True, seconds=60)
            print(f"errors {base:.1%} x{ratio:g}:", summary(times))
    for shift in (5.0, 10.0, 30.0, 300.0):
        times = time_to_fail(runs, 9, latency_shift(shift), latency=True, seconds=60)
        print(f"latency +{shift:g} ms:", summary(times))


if __name__ == "__main__":
    main()
