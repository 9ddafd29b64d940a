"""The router killed with SIGKILL under load: requests lost and how long nothing answered.

For each router (Caddy, HAProxy), deploys the shop's staging, then runs an
open-loop load (`bench.loadgen.OpenLoad`, fixed rate) on the environment's URL:
first a baseline window with no fault, then `--kills` windows in each of which
the router's process gets SIGKILL and supervisord starts it again. Prints per
window the requests sent and failed, the gap (from the kill to the first
request that got an answer after it, and until the port listened again), and
the ratio of failures to the baseline's. Writes bench/results/router_restart.json.

    python bench/router_restart.py [--rate 250] [--seconds 4] [--kills 3] [--routers caddy haproxy]

Target: the gap stays under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loadgen import OpenLoad, OpenLoadResult  # noqa: E402
from bench.zero_downtime import RESULTS  # noqa: E402
from tests.support.project import Project, make_project  # noqa: E402


def router_pid(shop: Project, program: str) -> int:
    from conveyor.paths import Paths
    from conveyor.targets.supervisor import Supervisor

    info = Supervisor(Paths(shop.home)).program_info(program)
    if info is None or info.status.pid is None:
        raise SystemExit(f"{program} does not run")
    return info.status.pid


def window(url: str, rate: float, seconds: float, kill: int | None) -> dict[str, Any]:
    """One load window; with `kill`, that pid gets SIGKILL a third of the way in."""
    from conveyor.routers.exclusive import listen_port
    from conveyor.targets.listening import listening_inodes

    port = listen_port(url.split("/")[2])
    assert port is not None
    load = OpenLoad(url, rate)
    killed_at = listening_again = None
    with load:
        time.sleep(seconds / 3)
        if kill is not None:
            before = listening_inodes(port)
            killed_at = load.clock()
            os.kill(kill, signal.SIGKILL)
            while not listening_inodes(port) - before:  # until a new socket listens
                if load.clock() - killed_at > 10:
                    break
                time.sleep(0.001)
            listening_again = load.clock() - killed_at
        time.sleep(max(0.0, seconds - (load.clock() - load.result.started)))
    result: OpenLoadResult = load.result
    figures: dict[str, Any] = {
        "requests": result.requests,
        "failed": result.failures,
        "errors": dict(Counter(s.error for s in result.samples if s.error)),
    }
    if killed_at is not None:
        after = [s for s in result.samples if s.ok and s.sent >= killed_at]
        first = min((s.done for s in after), default=float("nan"))
        figures["gap_s"] = round(first - killed_at, 3)
        figures["listening_again_s"] = round(listening_again or 0.0, 3)
    return figures


def scenario(router: str, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"conveyor-bench-restart-{router}-"))
    shop = make_project(tmp)
    shop.env["SHOP_STAGING_ROUTER"] = router
    try:
        shop.run("build")
        shop.run("deploy", "staging")
        url = f"http://{shop.env['SHOP_STAGING_LISTEN']}/api/version"
        program = f"conveyor-{router}"
        baseline = window(url, args.rate, args.seconds, None)
        print(f"{router} baseline: {baseline}", flush=True)
        kills = []
        for n in range(args.kills):
            figures = window(url, args.rate, args.seconds, router_pid(shop, program))
            print(f"{router} kill {n + 1}: {figures}", flush=True)
            kills.append(figures)
            deadline = time.monotonic() + 10  # settled: supervisord says RUNNING again
            while time.monotonic() < deadline:
                from conveyor.paths import Paths
                from conveyor.targets.supervisor import Supervisor

                info = Supervisor(Paths(shop.home)).program_info(program)
                if info is not None and info.supervisor_state == "RUNNING":
                    break
                time.sleep(0.1)
        failed = sum(k["failed"] for k in kills)
        sent = sum(k["requests"] for k in kills)
        summary = {
            "baseline": baseline,
            "kills": kills,
            "failed_per_kill_median": statistics.median(k["failed"] for k in kills),
            "gap_s_median": statistics.median(k["gap_s"] for k in kills),
            "gap_s_max": max(k["gap_s"] for k in kills),
            "failure_ratio": (failed / sent) / max(baseline["failed"] / baseline["requests"], 1e-9)
            if baseline["failed"]
            else None,
        }
        print(
            f"{router}: {sent} requests in {len(kills)} windows with a kill, {failed} failed "
            f"(baseline: {baseline['requests']} sent, {baseline['failed']} failed); gap median "
            f"{summary['gap_s_median']:.3f} s, max {summary['gap_s_max']:.3f} s",
            flush=True,
        )
        return summary
    finally:
        shop.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--routers", nargs="+", default=["caddy", "haproxy"])
    args = parser.parse_args()
    report = {router: scenario(router, args) for router in args.routers}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_restart.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
