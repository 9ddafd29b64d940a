"""The load the end-to-end tests put on the shop while they deploy."""

from __future__ import annotations

from typing import Any

from bench.loadgen import Load

# Requests per second for all clients together. Enough to have a request in
# flight at every weight change (one every 2.5 ms), yet leaving most of the two
# cores to Conveyor, the router and the apps, so that the tests' timing does
# not depend on how fast a saturating load generator is (an unthrottled one
# takes about a core and a half here, and every CLI call queues behind it).
E2E_RATE = 400.0


def traffic(url: str, clients: int = 4, **options: Any) -> Load:
    """Keep-alive load on `url` at `E2E_RATE`; see `bench.loadgen.Load`."""
    return Load(url, clients=clients, rate=E2E_RATE, **options)
