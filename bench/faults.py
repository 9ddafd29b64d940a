"""Requests lost to each fault of a rolling deploy, under a steady open-loop load.

Deploys the shop's staging (Caddy), then runs `bench.loadgen.OpenLoad` at a fixed
rate on the environment's URL through one baseline window (a rolling deploy, no
fault) and one window per fault, each around a rolling deploy of a new api release:

* `cli-killed`: the deploy is killed with SIGKILL after its first `start` step,
  then `conveyor resume` finishes it;
* `supervisord-killed`: the environment's supervisord gets SIGKILL at the same
  point (the router and the instances die with it); the deploy goes on, finds
  the platform gone, brings it back and rolls back;
* `router-killed`: Caddy gets SIGKILL at the same point; supervisord starts it again.

Prints, per window, the requests sent and failed, the longest run of failures
(seconds from the first failed request to the next answer), how the deployment
ended and what answers afterwards. Writes bench/results/faults.json.

    python bench/faults.py [--rate 200] [--faults cli-killed supervisord-killed router-killed]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loadgen import OpenLoad  # noqa: E402
from bench.zero_downtime import RESULTS  # noqa: E402
from tests.support.project import Project, make_project  # noqa: E402

FAULTS = ("cli-killed", "supervisord-killed", "router-killed")


def new_api(shop: Project, marker: str) -> None:
    server = shop.root / "api" / "server.py"
    server.write_text(server.read_text() + f"\n# {marker}\n")
    shop.commit(marker)
    shop.run("build")


def first_start(shop: Project) -> int:
    plan = shop.json("deploy", "staging", "--dry-run")
    assert isinstance(plan, dict)
    return next(n for n, s in enumerate(plan["steps"], 1) if s["kind"] == "start")


def platform_pids(shop: Project) -> tuple[int, int]:
    """supervisord's pid and Caddy's."""
    from conveyor.paths import Paths
    from conveyor.targets.supervisor import Supervisor

    supervisor = Supervisor(Paths(shop.home))
    pid = supervisor.supervisord_pid()
    info = supervisor.program_info("conveyor-caddy")
    assert pid is not None and info is not None and info.status.pid is not None
    return pid, info.status.pid


def longest_outage(samples: list[Any]) -> float:
    """Seconds from the first failed request of a run of failures to the next answer."""
    longest, began = 0.0, None
    for sample in sorted(samples, key=lambda s: s.sent):
        if not sample.ok:
            began = sample.sent if began is None else began
        elif began is not None:
            longest, began = max(longest, sample.done - began), None
    return round(longest, 3)


def episode(shop: Project, url: str, rate: float, fault: str | None, tmp: Path) -> dict[str, Any]:
    new_api(shop, f"{fault or 'baseline'} {time.time()}")
    index = first_start(shop)
    go_on = tmp / f"go-on-{fault}"
    env = (
        {}
        if fault is None
        else {"CONVEYOR_FAILPOINTS": f"executor.after_step:{index}=wait:{go_on}"}
    )
    load = OpenLoad(url, rate)
    outcome = ""
    with load:
        time.sleep(1.0)
        deploying = shop.start("deploy", "staging", env=env)
        assert deploying.stderr is not None
        if fault is not None:
            for line in deploying.stderr:
                if line.startswith(f"failpoint executor.after_step:{index}: waiting"):
                    break
            supervisord, caddy = platform_pids(shop)
            if fault == "cli-killed":
                deploying.kill()
            elif fault == "supervisord-killed":
                os.kill(supervisord, signal.SIGKILL)
            elif fault == "router-killed":
                os.kill(caddy, signal.SIGKILL)
            go_on.touch()
        deploying.communicate(timeout=600)
        if fault == "cli-killed":
            shop.run("resume", "staging", check=False, timeout=600)
        history = shop.json("history", "staging")
        assert isinstance(history, list)
        outcome = str(history[0]["status"])
        time.sleep(1.0)
    result = load.result
    return {
        "fault": fault or "none",
        "requests": result.requests,
        "failed": result.failures,
        "errors": dict(
            Counter(s.error or f"status {s.status}" for s in result.samples if not s.ok)
        ),
        "longest_outage_s": longest_outage(result.samples),
        "deployment": outcome,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-faults-"))
    shop = make_project(tmp)
    report: list[dict[str, Any]] = []
    try:
        shop.run("build")
        shop.run("deploy", "staging")
        url = f"http://{shop.env['SHOP_STAGING_LISTEN']}/api/version"
        for fault in (None, *args.faults):
            figures = episode(shop, url, args.rate, fault, tmp)
            report.append(figures)
            print(
                f"{figures['fault']:<20} {figures['requests']:>6} sent, {figures['failed']:>5} "
                f"failed, longest outage {figures['longest_outage_s']:.3f} s, deployment "
                f"{figures['deployment']}; errors {figures['errors']}",
                flush=True,
            )
    finally:
        shop.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
