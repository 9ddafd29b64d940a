"""Router cost: requests/s and p99 through the router vs straight to the instance behind it.

For each router (Caddy, HAProxy), deploys the shop's api with one replica,
then alternates unthrottled `hey` runs against the instance's own address
and against the environment's URL (the router in front of that same
instance), `--rounds` times each, for two endpoints: `/api/version` (does
nothing: the worst case for a proxy) and `/api/work?ms=1` (1 ms of CPU, like
a light real handler). Prints the medians and the throughput ratio. Writes
bench/results/router.json.

    python bench/router.py [--seconds 8] [--clients 16] [--rounds 3] [--routers caddy haproxy]

Target: the router costs under 10% of throughput. On a 2-core machine hey,
the router and the app share the CPU, so what the router uses is taken from
the app.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.zero_downtime import RESULTS, run_hey  # noqa: E402
from tests.support.project import make_project  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--routers", nargs="+", default=["caddy", "haproxy"])
    args = parser.parse_args()
    if shutil.which("hey") is None:
        sys.exit("hey is not installed: apt-get install hey")

    report: dict[str, Any] = {}
    for router in args.routers:
        tmp = Path(tempfile.mkdtemp(prefix=f"conveyor-bench-{router}-"))
        shop = make_project(tmp)
        shop.env["SHOP_API_REPLICAS"] = "1"
        shop.env["SHOP_STAGING_ROUTER"] = router
        try:
            shop.run("build")
            shop.run("deploy", "staging")
            status = json.loads(shop.run("status", "staging", "--json").stdout)
            api = next(s for s in status["environments"][0]["services"] if s["name"] == "api")
            direct = f"http://{api['instances'][0]['address']}"
            routed = f"http://{shop.env['SHOP_STAGING_LISTEN']}"
            for path in ("/api/version", "/api/work?ms=1"):
                report[f"{router} {path}"] = compare(direct + path, routed + path, args)
        finally:
            shop.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router.json").write_text(json.dumps(report, indent=2))
    print(
        f"hey, {args.clients} connections, {args.seconds:g}s x {args.rounds} rounds each "
        "(medians), shop api with 1 instance"
    )
    for name, figures in report.items():
        print(name)
        for side in ("direct", "routed"):
            r = figures[side]
            print(
                f"  {side:7} {r['rps']:>9.0f} req/s  p99 {r['p99_ms']:>7.1f} ms  "
                f"failures {r['failures']}"
            )
        cost = figures["throughput_cost"]
        verdict = "PASS" if cost < 0.10 else "MISS"
        print(f"  router cost: {cost:.1%} of throughput (target < 10%) {verdict}")


def compare(direct: str, routed: str, args: argparse.Namespace) -> dict[str, Any]:
    """Alternate runs straight to the instance and through Caddy; medians of each."""
    rate = 1_000_000  # hey's -q is per client: ask for far more than we can get
    runs: dict[str, list[tuple[float, float, int]]] = {"direct": [], "routed": []}
    for _ in range(args.rounds):
        for name, url in (("direct", direct), ("routed", routed)):
            window = run_hey(url, args.seconds, rate, args.clients)
            runs[name].append((window.requests / args.seconds, window.p99_ms, window.failures))
    figures: dict[str, Any] = {
        name: {
            "rps": round(statistics.median(r[0] for r in runs[name]), 1),
            "p99_ms": round(statistics.median(r[1] for r in runs[name]), 2),
            "failures": sum(r[2] for r in runs[name]),
            "runs": runs[name],
        }
        for name in runs
    }
    figures["throughput_cost"] = round(1 - figures["routed"]["rps"] / figures["direct"]["rps"], 4)
    return figures


if __name__ == "__main__":
    main()
