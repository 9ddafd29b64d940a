"""Monitor cost: CPU of the agent evaluating 20 alert rules every second.

    .venv/bin/python bench/monitors.py [--seconds 30] [--rules 20] [--rate 50]

On a throwaway copy of examples/shop (staging: 1 api and 1 web instance behind
Caddy), under a steady load of `--rate` requests per second on /api/version
(bench/loadgen.py, so the router's access log grows and every evaluation has new
lines to read):

- baseline: the agent of staging with one scheduled job that never comes due and no
  monitors (what every environment with jobs runs anyway);
- monitors: the same agent after a deploy that adds `--rules` rules at `interval: 1s`
  (error rates and latency quantiles of both services, request counts; each window
  1m), which replaces it.

For each, the agent's CPU time (user + system, from /proc/PID/stat) over `--seconds`
seconds of wall time after a settling second, as a percentage of one core. Prints
both, the difference and the ratio, PASS/MISS against the target (the monitors'
agent under 5 % of a core), and writes bench/results/monitors.json. The temporary
home's supervisord is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from bench.loadgen import Load  # noqa: E402
from tests.support.project import Project, make_project  # noqa: E402

RESULTS = REPO / "bench" / "results" / "monitors.json"
TARGET_PERCENT = 5.0
TICKS = os.sysconf("SC_CLK_TCK")
EXPRESSIONS = (
    "error_rate > 5% for 5m",
    "p95 > 2s for 5m",
    "p99 > 5s for 5m",
    "requests < 1 for 10m",
    "p50 > 500ms for 5m",
)


def rules(count: int) -> dict[str, Any]:
    """`count` rules over the api and the web service, cycling through the expressions."""
    found = {}
    for i in range(count):
        found[f"rule-{i:02d}"] = {
            "alert": EXPRESSIONS[i % len(EXPRESSIONS)],
            "service": ("api", "web")[i % 2],
            "window": "1m",
        }
    return found


def configure(project: Project, monitors: dict[str, Any] | None) -> None:
    path = project.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    config["services"]["web"]["replicas"] = 1
    staging = config["environments"]["staging"]
    staging["strategy"] = {"type": "immediate"}
    staging.pop("monitors", None)
    if monitors is not None:
        staging["monitors"] = monitors
    config["jobs"] = {
        "yearly": {"schedule": "0 3 1 1 *", "service": "api", "command": "true"},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit("monitors" if monitors else "no monitors")


def agent_pid(project: Project) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        data: Any = project.json("jobs", "staging")
        if data["agent"]["running"] and data["agent"]["pid"]:
            return int(data["agent"]["pid"])
        time.sleep(0.5)
    raise SystemExit("the agent of staging did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def measure(project: Project, seconds: float) -> dict[str, float]:
    pid = agent_pid(project)
    time.sleep(1.0)  # settling: start-up is not what is measured
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = cpu_seconds(pid), time.monotonic()
    if agent_pid(project) != pid:
        raise SystemExit("the agent restarted while it was measured")
    used = cpu1 - cpu0
    return {
        "cpu_s": round(used, 3),
        "wall_s": round(wall1 - wall0, 3),
        "percent_of_a_core": round(100 * used / (wall1 - wall0), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="conveyor-bench-monitors-") as tmp:
        project = make_project(Path(tmp))
        project.env["SHOP_API_REPLICAS"] = "1"
        try:
            configure(project, None)
            project.run("deploy", "staging", "--build")
            url = f"http://{project.env['SHOP_STAGING_LISTEN']}/api/version"
            with Load(url, clients=2, rate=args.rate):
                baseline = measure(project, args.seconds)
                configure(project, {"interval": "1s", "rules": rules(args.rules)})
                deployed = project.run("deploy", "staging")
                assert "monitors" in deployed.stderr, deployed.stderr
                monitored = measure(project, args.seconds)
        finally:
            project.shutdown()

    extra = monitored["percent_of_a_core"] - baseline["percent_of_a_core"]
    # An idle agent may use less than one clock tick: the ratio is then a lower bound.
    floor = max(baseline["cpu_s"], 1 / TICKS)
    ratio = monitored["cpu_s"] / floor
    per_round_ms = 1000 * (monitored["cpu_s"] - baseline["cpu_s"]) / monitored["wall_s"]
    verdict = "PASS" if monitored["percent_of_a_core"] < TARGET_PERCENT else "MISS"
    print(f"agent without monitors (baseline): {baseline['percent_of_a_core']:.2f} % of a core")
    print(
        f"agent with {args.rules} rules every 1s:   {monitored['percent_of_a_core']:.2f} % of a"
        f" core ({verdict}, target < {TARGET_PERCENT:g} %)"
    )
    bound = "" if baseline["cpu_s"] else " at least (the baseline used under one clock tick)"
    print(f"difference: {extra:+.2f} points; ratio {ratio:.0f}x the baseline{bound}")
    print(f"one round of {args.rules} rules: {per_round_ms:.1f} ms of CPU")
    report = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": vars(args),
        "baseline": baseline,
        "monitors": monitored,
        "difference_points": round(extra, 2),
        "ratio": round(ratio, 2),
        "ratio_is_a_lower_bound": not baseline["cpu_s"],
        "round_cpu_ms": round(per_round_ms, 2),
        "target_percent": TARGET_PERCENT,
        "verdict": verdict,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
