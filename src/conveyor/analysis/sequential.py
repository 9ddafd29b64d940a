"""An anytime-valid sequential test that a canary's rate of bad events is no worse.

Bad events are errors (5xx) or slow requests. In each interval the canary
serves `n_c` requests and gets `x` bad events, the release it is compared
with serves `n_b` and gets `y`. Given the total `x + y`, each bad event is
the canary's with probability

    pi = rho * n_c / (rho * n_c + n_b)

where `rho` is the ratio of the canary's rate of bad events to the other
release's. The base rate cancels out: it may be 0.1% or 5%, and may change
from one interval to the next (a downstream outage hits both releases), as
may the traffic shares. The null hypothesis is `rho <= rho0 = 1 +
tolerance` ("the canary is no worse, up to the tolerance").

The statistic is a mixture likelihood ratio (a mixture SPRT): for each
ratio `rho_k = rho0 * r_k` on a grid, the likelihood ratio of the events
seen so far under `rho_k` against `rho0`, averaged with weights `w_k`:

    E_t = sum_k w_k * prod_{intervals} (r_k)^x * (1 + (r_k - 1) * pi0)^-(x + y)

with `pi0` the probability above for `rho0`. Under the null, `E_t` is a
nonnegative supermartingale that starts at 1 (each interval's factor has
conditional expectation <= 1), so by Ville's inequality
`P(E_t >= 1/alpha at any t) <= alpha`: the test may look after every
snapshot, forever, and still wrongly rejects with probability at most alpha.
A grid (rather than a conjugate Beta mixture) keeps this exact when `pi0`
changes from one interval to the next. See docs/analysis.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["DEFAULT_RATIOS", "RateRatioTest"]

DEFAULT_RATIOS: tuple[float, ...] = tuple(2 ** (k / 2) for k in range(1, 15))
"""Alternatives, as multiples of `1 + tolerance`: sqrt(2), 2, 2.8, ... 128, equally weighted."""

_MAX_LOG = 690.0  # exp() of more overflows a float


class RateRatioTest:
    """Mixture SPRT of H0: canary rate <= (1 + tolerance) * reference rate (one-sided).

    >>> test = RateRatioTest(tolerance=0.0)
    >>> test.update(canary_events=24, canary_requests=500, other_events=2, other_requests=1000)
    >>> round(test.e_value), test.e_value >= 100
    (209373596, True)
    """

    def __init__(
        self,
        tolerance: float = 0.0,
        ratios: Sequence[float] = DEFAULT_RATIOS,
        weights: Sequence[float] | None = None,
    ) -> None:
        if tolerance < 0:
            raise ValueError("the tolerance cannot be negative")
        if not ratios or min(ratios) <= 1:
            raise ValueError("alternative ratios must be above 1")
        if weights is None:
            weights = [1 / len(ratios)] * len(ratios)
        if len(weights) != len(ratios) or min(weights) <= 0 or abs(sum(weights) - 1) > 1e-9:
            raise ValueError("weights must be positive, one per ratio, and sum to 1")
        self.null_ratio = 1.0 + tolerance
        self.ratios = tuple(ratios)
        self._log_ratios = tuple(math.log(r) for r in ratios)
        self._log_terms = [math.log(w) for w in weights]
        self.canary_events = 0
        self.other_events = 0
        self.log_e_value = 0.0

    def update(
        self, canary_events: int, canary_requests: int, other_events: int, other_requests: int
    ) -> None:
        """Add one interval: bad events and requests of the canary and of the other release.

        An interval where one side served nothing says nothing about the ratio
        and is skipped; so is an interval without bad events.
        """
        if canary_requests <= 0 or other_requests <= 0:
            return
        events = canary_events + other_events
        if events == 0:
            return
        self.canary_events += canary_events
        self.other_events += other_events
        weighted = self.null_ratio * canary_requests
        pi0 = weighted / (weighted + other_requests)
        terms = self._log_terms
        for k, log_ratio in enumerate(self._log_ratios):
            terms[k] += canary_events * log_ratio - events * math.log1p((self.ratios[k] - 1) * pi0)
        top = max(terms)
        self.log_e_value = top + math.log(sum(math.exp(t - top) for t in terms))

    @property
    def e_value(self) -> float:
        """The evidence against H0 (`exp(log_e_value)`, capped below float overflow)."""
        return math.exp(min(self.log_e_value, _MAX_LOG))

    def rejects(self, alpha: float) -> bool:
        """True once the e-value reached 1/alpha: with probability <= alpha under H0."""
        return self.log_e_value >= -math.log(alpha)

    @property
    def likeliest_ratio(self) -> float | None:
        """The alternative rate ratio (`rho_k`) that the data support most, if any events."""
        if self.canary_events + self.other_events == 0:
            return None
        best = max(range(len(self.ratios)), key=self._log_terms.__getitem__)
        return self.null_ratio * self.ratios[best]
