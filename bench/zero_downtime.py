"""Zero-downtime benchmark: fixed-rate load with `hey` while staging rolls v1->v2->v1.

For each deploy, `hey` runs a window of `--window` seconds at `--rate` requests
per second against the shop's /api/version, and the deploy starts half a
second into it; between deploys an idle window of the same rate is measured.
The same is then done with the naive stop-then-start deploy (the `recreate`
strategy) as the baseline. Prints requests, failures and p50/p99 latency for
deploy windows and idle windows of both, and writes bench/results/zero_downtime.json.

    python bench/zero_downtime.py [--cycles 10] [--baseline-cycles 3] [--rate 1000]

Needs `hey` (apt-get install hey); `CONVEYOR_BENCH=1 ./scripts/bootstrap` installs it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.project import Project, make_project  # noqa: E402

RESULTS = REPO / "bench" / "results"


@dataclass
class Window:
    """What `hey` saw in one window."""

    requests: int = 0
    failures: int = 0  # non-2xx responses plus transport errors
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class Totals:
    windows: list[Window] = field(default_factory=list)

    def add(self, window: Window) -> None:
        self.windows.append(window)

    def summary(self) -> dict[str, float | int]:
        requests = sum(w.requests for w in self.windows)
        weights = [(w.requests, w) for w in self.windows if w.requests]

        def weighted(attr: str) -> float:
            total = sum(n for n, _ in weights)
            return sum(n * getattr(w, attr) for n, w in weights) / total if total else 0.0

        return {
            "windows": len(self.windows),
            "requests": requests,
            "failures": sum(w.failures for w in self.windows),
            "p50_ms": round(weighted("p50_ms"), 2),
            "p99_ms": round(weighted("p99_ms"), 2),
            "worst_p99_ms": round(max((w.p99_ms for w in self.windows), default=0.0), 2),
        }


def run_hey(url: str, seconds: float, rate: int, clients: int) -> Window:
    """One fixed-rate window; parse hey's summary."""
    per_client = max(1, rate // clients)
    out = subprocess.run(
        ["hey", "-z", f"{seconds}s", "-c", str(clients), "-q", str(per_client), "-t", "10", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    window = Window()
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    errors = (
        {
            m.group(2).strip(): int(m.group(1))
            for m in re.finditer(
                r"^\s+\[(\d+)\]\s+(.+)$", out.split("Error distribution:")[-1], re.M
            )
        }
        if "Error distribution:" in out
        else {}
    )
    window.requests = sum(statuses.values()) + sum(errors.values())
    window.failures = sum(n for code, n in statuses.items() if not 200 <= code < 300)
    window.failures += sum(errors.values())
    window.errors = errors
    quantiles = dict(re.findall(r"(\d+)%% in ([\d.]+) secs".replace("%%", "%"), out))
    window.p50_ms = float(quantiles.get("50", 0)) * 1000
    window.p99_ms = float(quantiles.get("99", 0)) * 1000
    return window


def deploy_under_load(shop: Project, url: str, release: str, args: argparse.Namespace) -> Window:
    result: dict[str, Window] = {}

    def load() -> None:
        result["w"] = run_hey(url, args.window, args.rate, args.clients)

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    shop.run("deploy", "staging", "-r", f"api={release}")
    took = time.monotonic() - started
    thread.join()
    if took > args.window - 0.5:
        print(f"  warning: deploy took {took:.1f}s, longer than the load window", file=sys.stderr)
    return result["w"]


def scenario(strategy: str, cycles: int, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"conveyor-bench-{strategy}-"))
    shop = make_project(tmp)
    shop.env["SHOP_STRATEGY"] = strategy
    try:
        v1 = json.loads(shop.run("build", "--json").stdout)
        releases = [next(r["id"] for r in v1 if r["service"] == "api")]
        shop.run("deploy", "staging")
        (shop.root / "api" / "CHANGES").write_text("v2\n")
        shop.commit("v2")
        v2 = json.loads(shop.run("build", "--json").stdout)
        releases.append(next(r["id"] for r in v2 if r["service"] == "api"))
        url = f"http://{shop.env['SHOP_STAGING_LISTEN']}/api/version"
        deploys, idle = Totals(), Totals()
        for cycle in range(cycles):
            for release in (releases[1], releases[0]):
                idle.add(run_hey(url, args.idle, args.rate, args.clients))
                window = deploy_under_load(shop, url, release, args)
                deploys.add(window)
                print(
                    f"  {strategy} cycle {cycle + 1}: deploy window {window.requests} requests, "
                    f"{window.failures} failed, p99 {window.p99_ms:.1f} ms",
                    flush=True,
                )
        return {
            "strategy": strategy,
            "cycles": cycles,
            "deploys": deploys.summary(),
            "idle": idle.summary(),
            "deploy_windows": [asdict(w) for w in deploys.windows],
        }
    finally:
        shop.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10, help="v1->v2->v1 round trips")
    parser.add_argument("--baseline-cycles", type=int, default=3)
    parser.add_argument("--rate", type=int, default=400, help="requests per second")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--window", type=float, default=7.0, help="seconds of load per deploy")
    parser.add_argument("--idle", type=float, default=6.0, help="seconds of idle load per deploy")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        sys.exit("hey is not installed: apt-get install hey")

    rolling = scenario("rolling", args.cycles, args)
    baseline = scenario("recreate", args.baseline_cycles, args)
    total_requests = rolling["deploys"]["requests"] + rolling["idle"]["requests"]
    total_failures = rolling["deploys"]["failures"] + rolling["idle"]["failures"]
    report = {
        "rate": args.rate,
        "rolling": rolling,
        "baseline_recreate": baseline,
        "total_requests": total_requests,
        "total_failures": total_failures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "zero_downtime.json").write_text(json.dumps(report, indent=2))

    print(f"\nfixed rate {args.rate} req/s with hey, {args.clients} connections")
    print(f"{'':28} {'requests':>9} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
    rows: list[tuple[str, Any]] = [
        ("rolling: during deploys", rolling["deploys"]),
        ("rolling: idle", rolling["idle"]),
        ("recreate: during deploys", baseline["deploys"]),
        ("recreate: idle", baseline["idle"]),
    ]
    for name, d in rows:
        figures = f"{d['requests']:>9} {d['failures']:>7} {d['p50_ms']:>8.1f} {d['p99_ms']:>8.1f}"
        print(f"{name:28} {figures}")
    ok = total_failures == 0 and total_requests >= 100_000
    print(
        f"\nrolling: {total_failures} failed of {total_requests} requests "
        f"(target: 0 of >= 100,000) {'PASS' if ok else 'MISS'}"
    )
    base = baseline["deploys"]
    print(f"baseline recreate: {base['failures']} failed of {base['requests']} during deploys")


if __name__ == "__main__":
    main()
