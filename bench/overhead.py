"""What Conveyor itself costs: CLI start-up, CLI memory, and deploy time beyond the apps.

    .venv/bin/python bench/overhead.py [--runs 20] [--deploys 5]

On a throwaway copy of examples/shop (its own git repository and Conveyor
home, as the end-to-end tests make it), with staging deployed:

(a) start-up: wall time of `conveyor --version` and `conveyor status` (warm:
    caches filled, supervisord running), against `python -c pass` measured in
    the same run, interleaved so that machine noise hits all three alike;
(b) peak RSS of the CLI process (and anything it waited for) for `status`
    and for a full `deploy`, from wait4(2);
(c) deploy wall time against its unavoidable part: N deploys alternating two
    api releases; per deploy, the time the new instances took to boot until
    healthy (`wait_healthy` steps) and to drain the old ones (`drain` steps),
    from the step journal. Orchestration overhead = wall - those.

Prints the figures with PASS/MISS against the targets and writes them to
bench/results/overhead.json. supervisord of the temporary home (with Caddy and
the instances under it) is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.project import Project, make_project  # noqa: E402

RESULTS = REPO / "bench" / "results" / "overhead.json"

TARGET_STATUS_MS = 300.0
TARGET_RSS_MB = 100.0
TARGET_OVERHEAD_S = 1.0


@dataclass
class Run:
    wall: float  # seconds
    max_rss_kb: int
    returncode: int
    stdout: str
    stderr: str


def run_measured(argv: list[str], project: Project) -> Run:
    """Run `argv` in the project; wall time and peak RSS of the process tree it waited for."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=project.root,
            env=project.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
        out.seek(0)
        err.seek(0)
        return Run(
            wall=wall,
            max_rss_kb=usage.ru_maxrss,  # kilobytes on Linux
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def checked(run: Run, what: str) -> Run:
    if run.returncode != 0:
        raise SystemExit(f"{what} exited {run.returncode}\n{run.stdout}\n{run.stderr}")
    return run


def conveyor_argv() -> list[str]:
    """The installed `conveyor` script (what users run), else `python -m conveyor`."""
    script = Path(sys.executable).with_name("conveyor")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "conveyor"]


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def startup(project: Project, runs: int) -> dict[str, Any]:
    cli = conveyor_argv()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "conveyor --version": [*cli, "--version"],
        "conveyor status": [*cli, "status"],
    }
    for argv in commands.values():  # warm up: page cache, .pyc files, status summary
        for _ in range(2):
            checked(run_measured(argv, project), " ".join(argv))
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(checked(run_measured(argv, project), name).wall)
    baseline = statistics.median(times["python -c pass"])
    result = {}
    for name, samples in times.items():
        median = statistics.median(samples)
        result[name] = {
            "median_ms": round(1000 * median, 1),
            "p90_ms": round(1000 * quantile(samples, 0.9), 1),
            "ratio_to_baseline": round(median / baseline, 2),
            "samples_ms": [round(1000 * s, 1) for s in samples],
        }
    return result


def release_ids(project: Project) -> dict[str, str]:
    built = json.loads(
        checked(run_measured([*conveyor_argv(), "build", "--json"], project), "build").stdout
    )
    return {r["service"]: r["id"] for r in built}


def step_seconds(step: Any) -> float:
    if step.finished_at is None:
        return 0.0
    return float((step.finished_at - step.started_at).total_seconds())


def deploys(project: Project, count: int, releases: list[str]) -> list[dict[str, Any]]:
    from conveyor.store import open_store

    cli = conveyor_argv()
    results = []
    with open_store(f"sqlite:///{project.home / 'state.db'}") as store:
        for n in range(count):
            release = releases[n % len(releases)]
            argv = [*cli, "deploy", "staging", "-r", f"api={release}", "--json"]
            run = checked(run_measured(argv, project), " ".join(argv[1:]))
            deployment = json.loads(run.stdout)
            if deployment.get("status") != "succeeded":
                raise SystemExit(f"deploy {deployment.get('id')} did not succeed: {deployment}")
            by_kind: dict[str, float] = {}
            for step in store.list_steps(deployment["id"]):
                by_kind[step.kind] = by_kind.get(step.kind, 0.0) + step_seconds(step)
            healthy = by_kind.get("wait_healthy", 0.0)
            drain = by_kind.get("drain", 0.0)
            results.append(
                {
                    "deployment": deployment["id"],
                    "release": release,
                    "wall_s": round(run.wall, 3),
                    "wait_healthy_s": round(healthy, 3),
                    "drain_s": round(drain, 3),
                    "overhead_s": round(run.wall - healthy - drain, 3),
                    # CLI start-up, planning, lock and journal writes: in no step at all.
                    "outside_steps_s": round(run.wall - sum(by_kind.values()), 3),
                    "steps_s": {k: round(v, 3) for k, v in sorted(by_kind.items())},
                    "max_rss_kb": run.max_rss_kb,
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="start-up runs per command")
    parser.add_argument("--deploys", type=int, default=5, help="alternating api deploys")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-overhead-"))
    project: Project | None = None
    try:
        project = make_project(tmp)
        # Warm start-up reads bytecode cached beside the modules, as people's does (the
        # e2e helper keeps it in a cache of its own).
        project.env.pop("PYTHONPYCACHEPREFIX", None)
        first = release_ids(project)
        checked(run_measured([*conveyor_argv(), "deploy", "staging"], project), "deploy staging")
        (project.root / "api" / "CHANGES").write_text("overhead benchmark\n")
        project.commit("a second api release")
        second = release_ids(project)
        assert first["api"] != second["api"], "the change did not give a new api release"

        print(f"CLI start-up, {args.runs} warm runs each (interleaved)")
        start = startup(project, args.runs)
        print(f"  {'command':<22}{'median':>10}{'p90':>10}{'ratio':>9}")
        for name, figures in start.items():
            line = (
                f"  {name:<22}{figures['median_ms']:>7.0f} ms{figures['p90_ms']:>7.0f} ms"
                f"{figures['ratio_to_baseline']:>8.1f}x"
            )
            if name == "conveyor status":
                ok = figures["median_ms"] < TARGET_STATUS_MS
                line += f"   target < {TARGET_STATUS_MS:.0f} ms: {mark(ok)}"
            print(line)

        status_rss = checked(run_measured([*conveyor_argv(), "status"], project), "status")
        results = deploys(project, args.deploys, [second["api"], first["api"]])
        deploy_rss = max(r["max_rss_kb"] for r in results)
        peak_mb = max(status_rss.max_rss_kb, deploy_rss) / 1024
        print("\nPeak RSS of the CLI")
        print(f"  conveyor status   {status_rss.max_rss_kb / 1024:6.1f} MB")
        print(
            f"  conveyor deploy   {deploy_rss / 1024:6.1f} MB"
            f"   target < {TARGET_RSS_MB:.0f} MB: {mark(peak_mb < TARGET_RSS_MB)}"
        )

        print(f"\nDeploys of staging, api alternating between two releases (N={args.deploys})")
        print(f"  {'deployment':<22}{'wall':>8}{'healthy':>9}{'drain':>8}{'overhead':>10}")
        for r in results:
            print(
                f"  {r['deployment']:<22}{r['wall_s']:>7.2f}s{r['wait_healthy_s']:>8.2f}s"
                f"{r['drain_s']:>7.2f}s{r['overhead_s']:>9.2f}s"
            )
        overheads = [r["overhead_s"] for r in results]
        median_overhead = statistics.median(overheads)
        print(
            f"  {'median':<22}{statistics.median(r['wall_s'] for r in results):>7.2f}s"
            f"{statistics.median(r['wait_healthy_s'] for r in results):>8.2f}s"
            f"{statistics.median(r['drain_s'] for r in results):>7.2f}s{median_overhead:>9.2f}s"
            f"   target < {TARGET_OVERHEAD_S:.0f} s: {mark(median_overhead < TARGET_OVERHEAD_S)}"
            f" (max {max(overheads):.2f}s)"
        )
        outside = statistics.median(r["outside_steps_s"] for r in results)
        print(
            f"  of which outside any step (CLI start-up, planning, journal): {outside:.2f}s median"
        )

        report = {
            "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                # Start-up figures are only comparable between runs on a quiet machine.
                "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
            },
            "startup": start,
            "peak_rss_mb": {
                "status": round(status_rss.max_rss_kb / 1024, 1),
                "deploy": round(deploy_rss / 1024, 1),
            },
            "deploys": results,
            "median_overhead_s": median_overhead,
            "targets": {
                "status_median_ms": {
                    "target": TARGET_STATUS_MS,
                    "value": start["conveyor status"]["median_ms"],
                    "pass": start["conveyor status"]["median_ms"] < TARGET_STATUS_MS,
                },
                "peak_rss_mb": {
                    "target": TARGET_RSS_MB,
                    "value": round(peak_mb, 1),
                    "pass": peak_mb < TARGET_RSS_MB,
                },
                "deploy_overhead_median_s": {
                    "target": TARGET_OVERHEAD_S,
                    "value": median_overhead,
                    "pass": median_overhead < TARGET_OVERHEAD_S,
                },
            },
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(
            f"\nload average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
            f"{os.cpu_count()} CPUs"
        )
        print(f"wrote {RESULTS.relative_to(REPO)}")
    finally:
        if project is not None:
            project.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
