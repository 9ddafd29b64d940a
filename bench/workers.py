"""Celery workers replaced by `conveyor deploy` under a steady task load: tasks lost and
the longest gap in task processing, against the same load with no deploy.

Deploys the Celery project of the worker tests (`tests/support/celery_app.py`: a web
service, 2 Celery workers with `--concurrency 2`, a Celery beat; Celery's default
acknowledgement, prefetch 1) with a real `redis-server` of its own as the broker. Each
window queues tasks at 20 a second (each takes 50 ms and records when it finished) from
the worker's current release; a deploy window rolls the workers to a new release
(`stop_signal: TERM`, Celery's warm shutdown; surge 1) in the middle of it. Then it waits
until every queued task was processed and reads:

* lost: tasks queued and never processed; run twice: tasks Celery ran more than once
  (the task is idempotent, so its effect happened once: see celery/celery#3796);
* the longest gap: the longest time between two consecutive task completions, from the
  window's first completion to its last.

The baseline is the same load for as long as a deploy window lasted, with no deploy.
Writes bench/results/workers.json.

    python bench/workers.py [--deploys 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.zero_downtime import RESULTS  # noqa: E402
from tests.e2e.test_workers import enqueue, new_version, wait_for  # noqa: E402
from tests.support.celery_app import Redis, deployed  # noqa: E402
from tests.support.project import Project  # noqa: E402

LEAD = 2.0  # seconds of load before a deploy starts, and after it ends


def longest_gap(done: list[float]) -> float:
    """The longest time between two consecutive completions."""
    ordered = sorted(done)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0.0)


def window(project: Project, redis: Redis, deploy: bool, seconds: float) -> dict[str, Any]:
    """One window of load, with a deploy in its middle or for `seconds` without."""
    redis.cli("DEL", "processed", "runs", "release_of", "queued", "done_at")
    if deploy:
        new_version(project, f"v{time.time()}")
        project.run("build", timeout=600)
    queueing = enqueue(project, redis, 1_000_000)
    started = time.monotonic()
    wait_for("the first task", lambda: len(redis.hash("processed")) >= 1)
    if deploy:
        time.sleep(LEAD)
        project.run("deploy", "staging", timeout=600)
        time.sleep(LEAD)
    else:
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    queueing.terminate()
    queueing.wait(10)
    elapsed = time.monotonic() - started
    queued = int(redis.cli("GET", "queued"))
    wait_for(f"{queued} tasks", lambda: len(redis.hash("processed")) >= queued, 120)
    time.sleep(1.0)  # a task run twice would show by now
    processed = redis.hash("processed")
    done = [float(v) for n, v in redis.hash("done_at").items() if int(n) < queued]
    return {
        "deploy": deploy,
        "seconds": round(elapsed, 2),
        "queued": queued,
        "lost": sum(1 for n in range(queued) if str(n) not in processed),
        "twice": sum(1 for v in redis.hash("runs").values() if int(v) > 1),
        "longest_gap_s": round(longest_gap(done), 3),
        "releases": len(set(redis.hash("release_of").values())),
    }


def show(label: str, figures: dict[str, Any]) -> None:
    print(
        f"{label:<10} {figures['seconds']:>6.1f} s, {figures['queued']:>4} tasks queued "
        f"({figures['queued'] / figures['seconds']:.1f}/s), "
        f"{figures['lost']} lost, {figures['twice']} run twice, longest gap "
        f"{figures['longest_gap_s']:.3f} s, {figures['releases']} worker release(s)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-workers-"))
    tmp.chmod(0o711)  # the workers' user passes through to their releases
    report: dict[str, Any] = {"deploys": [], "baseline": []}
    try:
        with deployed(tmp, timeout=900) as (project, redis):
            for n in range(args.deploys):
                figures = window(project, redis, True, 0)
                report["deploys"].append(figures)
                show(f"deploy {n + 1}", figures)
            length = statistics.median(f["seconds"] for f in report["deploys"])
            for n in range(max(1, args.deploys // 2)):
                figures = window(project, redis, False, length)
                report["baseline"].append(figures)
                show(f"baseline {n + 1}", figures)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    deploys, baseline = report["deploys"], report["baseline"]
    gap = max(f["longest_gap_s"] for f in deploys)
    base = max(f["longest_gap_s"] for f in baseline)
    report["summary"] = {
        "tasks": sum(f["queued"] for f in deploys),
        "lost": sum(f["lost"] for f in deploys),
        "twice": sum(f["twice"] for f in deploys),
        "longest_gap_s": gap,
        "median_gap_s": statistics.median(f["longest_gap_s"] for f in deploys),
        "baseline_longest_gap_s": base,
        "ratio": round(gap / base, 2) if base else None,
    }
    s = report["summary"]
    print(
        f"\n{args.deploys} deploys: {s['lost']} of {s['tasks']} tasks lost (target 0), "
        f"{s['twice']} run twice; longest gap {gap:.3f} s (median of the deploys "
        f"{s['median_gap_s']:.3f} s; target < 2 s) against {base:.3f} s with no deploy "
        f"(ratio {s['ratio']})"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "workers.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
