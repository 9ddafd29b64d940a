"""Router cost: requests/s and p99 through Caddy vs straight to the one instance behind it.

Deploys the shop's api with one replica, then alternates unthrottled `hey`
runs against the instance's own address and against the environment's URL
(Caddy in front of that same instance), `--rounds` times each, and prints
the medians and the throughput ratio. Writes bench/results/router.json.

    python bench/router.py [--seconds 8] [--clients 16] [--rounds 3]

Target: the router costs under 10% of throughput.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.zero_downtime import RESULTS, run_hey  # noqa: E402
from tests.support.project import make_project  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("hey") is None:
        sys.exit("hey is not installed: apt-get install hey")

    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-router-"))
    shop = make_project(tmp)
    shop.env["SHOP_API_REPLICAS"] = "1"
    try:
        shop.run("build")
        shop.run("deploy", "staging")
        status = json.loads(shop.run("status", "staging", "--json").stdout)
        api = next(s for s in status["environments"][0]["services"] if s["name"] == "api")
        direct = f"http://{api['instances'][0]['address']}/api/version"
        routed = f"http://{shop.env['SHOP_STAGING_LISTEN']}/api/version"
        # An unlimited rate: hey's -q is per client, so ask for far more than we can get.
        rate = 1_000_000
        runs: dict[str, list[tuple[float, float, int]]] = {"direct": [], "caddy": []}
        for _ in range(args.rounds):
            for name, url in (("direct", direct), ("caddy", routed)):
                window = run_hey(url, args.seconds, rate, args.clients)
                runs[name].append((window.requests / args.seconds, window.p99_ms, window.failures))
    finally:
        shop.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(name: str, index: int) -> float:
        return statistics.median(r[index] for r in runs[name])

    report = {
        name: {
            "rps": round(med(name, 0), 1),
            "p99_ms": round(med(name, 1), 2),
            "failures": sum(r[2] for r in runs[name]),
            "runs": runs[name],
        }
        for name in runs
    }
    cost = 1 - report["caddy"]["rps"] / report["direct"]["rps"]  # type: ignore[operator]
    report["throughput_cost"] = round(cost, 4)  # type: ignore[assignment]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router.json").write_text(json.dumps(report, indent=2))
    print(
        f"hey, {args.clients} connections, {args.seconds:g}s x {args.rounds} rounds each "
        "(medians), shop api with 1 instance"
    )
    for name in ("direct", "caddy"):
        r = report[name]
        print(
            f"  {name:7} {r['rps']:>9.0f} req/s  p99 {r['p99_ms']:>7.1f} ms  "  # type: ignore[index]
            f"failures {r['failures']}"
        )  # type: ignore[index]
    verdict = "PASS" if cost < 0.10 else "MISS"
    print(f"router cost: {cost:.1%} of throughput (target < 10%) {verdict}")


if __name__ == "__main__":
    main()
