"""Zero downtime across hosts: the shop's `fleet` environment on 3 test hosts rolls
v1->v2->v1 ten times in host batches (`batch: 1`) under steady load through the router.

The load (`bench/loadgen.py`'s `Load`: keep-alive clients at a fixed total rate,
retries only where HTTP allows them, counted apart) runs from the first deploy's
start to the last one's end, without a pause. The baseline is the same load
against the same router and instances with no deploy, measured in the same run
before the round trips. Prints requests, failures, req/s, p50/p99 for both and
the ratios, and writes bench/results/fleet_rolling.json.

    CONVEYOR_TESTHOSTS_SET=K .venv/bin/python bench/fleet_rolling.py [--cycles 10]
        [--rate 500] [--clients 8] [--baseline 60]

Needs root (the test hosts: `scripts/testhosts`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loadgen import Load, LoadResult  # noqa: E402
from tests.support.fleet_shop import ENV, down, fleet_shop, fleet_url, placement  # noqa: E402
from tests.support.testhosts import hosts_up  # noqa: E402

RESULTS = REPO / "bench" / "results"
TARGET = 100_000


def figures(result: LoadResult) -> dict[str, Any]:
    return {
        "requests": result.requests,
        "failed": result.failures,
        "retried": result.retried,
        "seconds": round(result.elapsed, 1),
        "req_per_s": round(result.requests / result.elapsed, 1) if result.elapsed else 0.0,
        "p50_ms": round(result.quantile(0.5) or 0.0, 2),
        "p99_ms": round(result.quantile(0.99) or 0.0, 2),
        "errors": dict(result.errors),
    }


def api_release(built: list[dict[str, str]]) -> str:
    return next(r["id"] for r in built if r["service"] == "api")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10, help="v1->v2->v1 round trips")
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--clients", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--baseline", type=float, default=60.0, help="seconds without deploys")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-fleet-"))
    try:
        with hosts_up(3, tmp / "hosts") as hosts:
            shop = fleet_shop(tmp / "project", hosts, {"type": "rolling", "batch": 1})
            try:
                report = run(shop, args)
            finally:
                down(shop)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fleet_rolling.json").write_text(json.dumps(report, indent=2))
    show(report)


def run(shop: Any, args: argparse.Namespace) -> dict[str, Any]:
    v1 = api_release(json.loads(shop.run("build", "--json").stdout))
    shop.run("deploy", ENV, timeout=600)
    (shop.root / "api" / "CHANGES").write_text("v2\n")
    shop.commit("v2")
    v2 = api_release(json.loads(shop.run("build", "--json").stdout))
    hosts = sorted({host for host, _, _ in placement(shop).values()})
    url = fleet_url(shop)

    with Load(url, clients=args.clients, rate=args.rate) as load:
        time.sleep(args.baseline)
        baseline = load.stop()
    print(f"baseline, no deploy: {baseline.summary()}", flush=True)

    deploy_seconds: list[float] = []
    with Load(url, clients=args.clients, rate=args.rate, max_seconds=24 * 3600) as load:
        for cycle in range(args.cycles):
            for release in (v2, v1):
                started = time.monotonic()
                shop.run("deploy", ENV, "-r", f"api={release}", timeout=600)
                deploy_seconds.append(time.monotonic() - started)
            print(
                f"  round trip {cycle + 1}: {load.result.requests} requests so far, "
                f"{load.result.failures} failed; deploys {deploy_seconds[-2]:.1f} s and "
                f"{deploy_seconds[-1]:.1f} s",
                flush=True,
            )
        during = load.stop()
    serving = {release for _, release, state in placement(shop).values() if state == "serving"}
    assert serving == {v1}, serving
    return {
        "hosts": hosts,
        "strategy": {"type": "rolling", "batch": 1},
        "rate": args.rate,
        "clients": args.clients,
        "cycles": args.cycles,
        "deploys": len(deploy_seconds),
        "deploy_seconds": [round(s, 2) for s in deploy_seconds],
        "during": figures(during),
        "baseline": figures(baseline),
    }


def show(report: dict[str, Any]) -> None:
    during, base = report["during"], report["baseline"]
    print(
        f"\n{report['cycles']} rolling round trips (v1->v2->v1, batch: 1) on "
        f"{len(report['hosts'])} hosts ({', '.join(report['hosts'])}), {report['rate']:g} "
        f"req/s offered over {report['clients']} keep-alive connections"
    )
    print(f"{'':22} {'requests':>9} {'failed':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for name, d in (("during deploys", during), ("baseline, no deploy", base)):
        print(
            f"{name:22} {d['requests']:>9} {d['failed']:>7} {d['req_per_s']:>7.1f} "
            f"{d['p50_ms']:>8.2f} {d['p99_ms']:>8.2f}"
        )

    def ratio(key: str) -> str:
        return f"{during[key] / base[key]:.2f}x" if base[key] else "n/a"

    print(
        f"ratio during/baseline: req/s {ratio('req_per_s')}, p50 {ratio('p50_ms')}, "
        f"p99 {ratio('p99_ms')}"
    )
    seconds = report["deploy_seconds"]
    print(
        f"deploys: {len(seconds)}, median {sorted(seconds)[len(seconds) // 2]:.1f} s; "
        f"retried after a connection closed unanswered: {during['retried']}"
    )
    ok = during["failed"] == 0 and during["requests"] >= TARGET
    print(
        f"zero downtime across hosts: {during['failed']} failed of {during['requests']} "
        f"(target: 0 of >= {TARGET:,}) {'PASS' if ok else 'MISS'}"
    )


if __name__ == "__main__":
    main()
