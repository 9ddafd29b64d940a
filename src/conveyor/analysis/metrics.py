"""What the analysis reads: cumulative per-release counters, latencies as a histogram.

A router reports, for each release (`canary`, `baseline`, `stable`), counters
that only grow: requests, errors (5xx) and a latency histogram. A snapshot is
the value of these counters at one time; the difference of two snapshots is
what happened in between. Cumulative counters (as in Prometheus) are robust:
a snapshot that is lost just merges two intervals, and nothing is counted
twice.

Latencies are a histogram with fixed bucket bounds (`DEFAULT_BOUNDS_MS`,
about 20 buckets per decade from 0.1 ms to 100 s, chosen so that the
thresholds people write - 100ms, 250ms, 500ms, 1s, 2s - are bounds). With
fixed bounds, the number of requests slower than a bound is exact, two
histograms add and subtract bucket by bucket, and the size is fixed whatever
the traffic. Quantiles are interpolated linearly inside a bucket (at most
one bucket width off, under 10% relative). A router that has raw latencies
calls `Histogram.add_samples` (or `ReleaseStats.advance`).
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

__all__ = [
    "BASELINE",
    "CANARY",
    "DEFAULT_BOUNDS_MS",
    "RELEASES",
    "STABLE",
    "Histogram",
    "ReleaseStats",
]

CANARY = "canary"
BASELINE = "baseline"  # instances of the old release started beside the canary, same share
STABLE = "stable"  # the old release's instances that carry the rest of the traffic
RELEASES = (CANARY, BASELINE, STABLE)

_MANTISSAS = (1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2, 2.2, 2.5, 2.8, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9)
DEFAULT_BOUNDS_MS: tuple[float, ...] = (
    *(round(m * 10.0**exponent, 4) for exponent in range(-1, 5) for m in _MANTISSAS),
    100_000.0,
)
"""Upper bounds (ms) of the latency buckets; a last bucket holds everything slower."""


def _check_bounds(bounds: tuple[float, ...]) -> None:
    if not bounds:
        raise ValueError("a histogram needs at least one bucket bound")
    previous = 0.0
    for bound in bounds:
        if not (math.isfinite(bound) and bound > previous):
            raise ValueError("histogram bounds must be finite, positive and increasing")
        previous = bound


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts of latencies (ms) per bucket.

    Bucket `i` holds latencies in `(bounds[i-1], bounds[i]]` (the first from 0,
    the last, `counts[len(bounds)]`, everything above `bounds[-1]`).

    >>> h = Histogram.from_samples([10, 20, 30, 40, 1000])
    >>> h.total, h.count_above(40.0), h.quantile(0.5)
    (5, 1, 29.0)
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.bounds) + 1:
            raise ValueError(
                f"a histogram with {len(self.bounds)} bounds needs {len(self.bounds) + 1} counts,"
                f" got {len(self.counts)}"
            )
        if self.counts and min(self.counts) < 0:
            raise ValueError("histogram counts cannot be negative")
        if self.bounds is not DEFAULT_BOUNDS_MS:
            _check_bounds(self.bounds)

    @classmethod
    def empty(cls, bounds: tuple[float, ...] = DEFAULT_BOUNDS_MS) -> Histogram:
        return cls(bounds, (0,) * (len(bounds) + 1))

    @classmethod
    def from_samples(
        cls, samples_ms: Iterable[float], bounds: tuple[float, ...] = DEFAULT_BOUNDS_MS
    ) -> Histogram:
        return cls.empty(bounds).add_samples(samples_ms)

    def add_samples(self, samples_ms: Iterable[float]) -> Histogram:
        """This histogram plus raw latencies in milliseconds."""
        counts = list(self.counts)
        bounds = self.bounds
        for sample in samples_ms:
            if not sample >= 0:  # also refuses NaN
                raise ValueError(f"a latency must be a number of milliseconds >= 0, got {sample}")
            counts[bisect_left(bounds, sample)] += 1
        return Histogram(bounds, tuple(counts))

    @property
    def total(self) -> int:
        return sum(self.counts)

    def _same_bounds(self, other: Histogram) -> None:
        if other.bounds is not self.bounds and other.bounds != self.bounds:
            raise ValueError("cannot combine latency histograms with different bucket bounds")

    def __add__(self, other: Histogram) -> Histogram:
        self._same_bounds(other)
        return Histogram(self.bounds, tuple(map(operator.add, self.counts, other.counts)))

    def minus(self, earlier: Histogram) -> Histogram | None:
        """The counts added since `earlier`, or None when a count went down (counter reset)."""
        self._same_bounds(earlier)
        counts = tuple(map(operator.sub, self.counts, earlier.counts))
        if min(counts) < 0:
            return None
        return Histogram(self.bounds, counts)

    def quantile(self, q: float) -> float | None:
        """The `q`-quantile (0 < q < 1), interpolated in its bucket; None when empty.

        In the last, unbounded bucket it is the last bound (a lower bound of the truth).
        """
        running = list(accumulate(self.counts))
        if running[-1] == 0:
            return None
        index = self._bucket(q, running)
        bounds = self.bounds
        if index == len(bounds):
            return bounds[-1]
        rank = q * running[-1]
        below = running[index - 1] if index > 0 else 0
        low = bounds[index - 1] if index > 0 else 0.0
        return low + (bounds[index] - low) * (rank - below) / self.counts[index]

    def quantile_bucket(self, q: float) -> int:
        """Index of the bucket holding the `q`-quantile (the histogram must not be empty)."""
        running = list(accumulate(self.counts))
        if running[-1] == 0:
            raise ValueError("the quantile of an empty histogram is undefined")
        return self._bucket(q, running)

    @staticmethod
    def _bucket(q: float, running: list[int]) -> int:
        if not 0 < q < 1:
            raise ValueError(f"a quantile must be between 0 and 1, got {q}")
        # The first bucket whose running count reaches the rank; it is not empty,
        # since the rank is above 0.
        return bisect_left(running, q * running[-1])

    def count_above(self, bound: float) -> int:
        """How many latencies are above `bound`, which must be one of the bounds (exact)."""
        index = bisect_left(self.bounds, bound)
        if index == len(self.bounds) or self.bounds[index] != bound:
            raise ValueError(f"{bound} ms is not a bound of this histogram")
        return sum(self.counts[index + 1 :])

    def bound_at_or_above(self, value: float) -> float | None:
        """The smallest bound >= `value` (None above the last bound)."""
        index = bisect_left(self.bounds, value * (1 - 1e-12))
        return self.bounds[index] if index < len(self.bounds) else None

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON form: the counts between the first and last non-empty buckets.

        `bounds` is written only when they are not `DEFAULT_BOUNDS_MS`.
        """
        nonzero = [i for i, count in enumerate(self.counts) if count]
        data: dict[str, Any] = {}
        if self.bounds != DEFAULT_BOUNDS_MS:
            data["bounds"] = list(self.bounds)
        if nonzero:
            data["offset"] = nonzero[0]
            data["counts"] = list(self.counts[nonzero[0] : nonzero[-1] + 1])
        else:
            data["offset"] = 0
            data["counts"] = []
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        raw_bounds = data.get("bounds")
        bounds = DEFAULT_BOUNDS_MS if raw_bounds is None else tuple(float(b) for b in raw_bounds)
        if bounds == DEFAULT_BOUNDS_MS:
            bounds = DEFAULT_BOUNDS_MS
        offset = int(data.get("offset", 0))
        stored = [int(c) for c in data.get("counts", [])]
        if offset < 0 or offset + len(stored) > len(bounds) + 1:
            raise ValueError("histogram counts do not fit its buckets")
        counts = [0] * (len(bounds) + 1)
        counts[offset : offset + len(stored)] = stored
        return cls(bounds, tuple(counts))


@dataclass(frozen=True, slots=True)
class ReleaseStats:
    """A release's counters: requests, errors (5xx) and latencies.

    In a snapshot they are cumulative (they only grow, except when the router
    restarts); `since` turns two snapshots into the counts of the interval.
    `latency` is None for a source that has no latencies.
    """

    requests: int
    errors: int
    latency: Histogram | None = None

    def __post_init__(self) -> None:
        if self.requests < 0 or self.errors < 0:
            raise ValueError("request and error counts cannot be negative")
        if self.errors > self.requests:
            raise ValueError(f"{self.errors} errors out of {self.requests} requests")

    @classmethod
    def zero(cls, like: ReleaseStats | None = None) -> ReleaseStats:
        """No requests yet, with the same kind of latency histogram as `like`."""
        latency = None
        if like is not None and like.latency is not None:
            latency = Histogram.empty(like.latency.bounds)
        return cls(0, 0, latency)

    def advance(
        self, requests: int, errors: int, latencies_ms: Iterable[float] = ()
    ) -> ReleaseStats:
        """These counters plus one interval's requests, errors and raw latencies (ms)."""
        latency = self.latency if self.latency is not None else Histogram.empty()
        return ReleaseStats(
            self.requests + requests, self.errors + errors, latency.add_samples(latencies_ms)
        )

    def __add__(self, other: ReleaseStats) -> ReleaseStats:
        if self.latency is None:
            latency = other.latency
        elif other.latency is None:
            latency = self.latency
        else:
            latency = self.latency + other.latency
        return ReleaseStats(self.requests + other.requests, self.errors + other.errors, latency)

    def since(self, earlier: ReleaseStats) -> ReleaseStats:
        """What happened between `earlier` and this snapshot.

        When a counter went down, the router restarted its counters: as with
        Prometheus' `increase()`, everything counted since the restart - this
        snapshot's values - is the interval.
        """
        if self.requests < earlier.requests or self.errors < earlier.errors:
            return self
        latency = self.latency
        if latency is not None and earlier.latency is not None:
            latency = latency.minus(earlier.latency)
            if latency is None:
                return self
        return ReleaseStats(self.requests - earlier.requests, self.errors - earlier.errors, latency)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"requests": self.requests, "errors": self.errors}
        if self.latency is not None:
            data["latency_ms"] = self.latency.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReleaseStats:
        latency = data.get("latency_ms")
        return cls(
            int(data["requests"]),
            int(data["errors"]),
            None if latency is None else Histogram.from_dict(latency),
        )
