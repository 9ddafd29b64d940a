"""Rollback benchmark: seconds from `conveyor rollback` to all traffic on the previous release.

    .venv/bin/python bench/rollback.py [--rate 200] [--repeats 5]

On a throwaway copy of examples/shop (2 api instances behind Caddy) with the
blue_green strategy (auto promotion), v1 deployed: each repetition deploys
v2, then, under an open-loop load of `--rate` requests per second on
/api/version (bench/loadgen.py `OpenLoad`; every answer's `X-Release` header
says which release served it), runs `conveyor rollback staging` and
measures, from the client side, the seconds from the command's start to the
first moment after which every request gets a 2xx answer from v1 (the send
time of the first request after the last one that did not). Three cases:

(a) inside the rollback window (`rollback_window: 10m`): v1's instances are
    still warm and the rollback is a weight flip. Target: under 1 s.
(b) outside it, `rollback_window: 0s`: v1's instances were stopped at the
    promotion, the rollback starts new ones. Target: the instances' boot
    time + 1 s.
(b') outside it, window expired: `rollback_window: 3s` and the rollback
    runs 5 s after the promotion (the expiry watcher has stopped them, or
    the rollback stops them first).

(c) abort: the canary strategy at 50% sits in a 10-minute pause, and
    `conveyor abort staging` runs from another terminal: seconds from the
    command's start to all traffic on the stable release (the deploying
    process takes the request within 0.2 s and flips the weights before
    anything else). Target: under 1 s.

Boot time, same run: for each rollback of (b) and (b'), its `start` plus
`wait_healthy` step durations from `conveyor explain --json` (from starting
the instances until their health checks passed). The journal's timestamps
(the state store) split each rollback into CLI start-up and planning (until
the deployment record exists), the steps until the weight flip, and the
router applying it. Ratios: (b) / (a), and (a) / boot time.

Prints median and max per case with PASS/MISS and writes
bench/results/rollback.json. The temporary home's supervisord is stopped at
the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.canary import build_api, change_code, explain, mark, start_cli  # noqa: E402
from bench.loadgen import OpenLoad, OpenLoadResult  # noqa: E402
from tests.support.project import Project, make_project  # noqa: E402

RESULTS = REPO / "bench" / "results" / "rollback.json"

TARGET_INSIDE_S = 1.0
TARGET_ABORT_S = 1.0
TARGET_OUTSIDE_MARGIN_S = 1.0
SETTLE_S = 2.0  # load before the rollback
AFTER_S = 2.0  # load after it, to see that traffic stays on the previous release
EXPIRED_WINDOW_S = 3.0

CASES = {
    "inside": ("(a) inside the window", "10m", 0.0),
    "outside": ("(b) outside: rollback_window 0s", "0s", 0.0),
    "expired": ("(b') outside: window expired", f"{EXPIRED_WINDOW_S:g}s", EXPIRED_WINDOW_S + 2),
}
ABORT_TITLE = "(c) abort of a running canary"
SUMMARY_KEYS = (
    "to_previous_s",
    "command_s",
    "cli_and_planning_s",
    "wait_healthy_s",
    "until_flip_s",
)


def switched_at(result: OpenLoadResult, release: str, since: float) -> tuple[float, int]:
    """The first moment after which every request sent gets a 2xx from `release`, and
    how many requests sent after `since` did not."""
    samples = sorted(result.samples, key=lambda s: s.sent)
    others = [i for i, s in enumerate(samples) if not (s.ok and s.header == release)]
    not_yet = sum(1 for i in others if samples[i].sent >= since)
    if not others:
        return samples[0].sent, 0
    last = others[-1]
    if last + 1 >= len(samples):
        return float("inf"), not_yet
    return samples[last + 1].sent, not_yet


def journal(shop: Project, deployment_id: str, after: float = 0.0) -> dict[str, float]:
    """Wall-clock times from the state store: deployment start, and when the first
    weight change that started after `after` was done."""
    from conveyor.store import open_store

    with open_store(f"sqlite:///{shop.home / 'state.db'}") as store:
        record = store.get_deployment(deployment_id)
        steps = store.list_steps(deployment_id)
    assert record is not None
    times = {"created": record.started_at.timestamp()}
    flips = [
        s
        for s in steps
        if s.kind == "set_weights"
        and s.finished_at is not None
        and s.started_at is not None
        and s.started_at.timestamp() >= after
    ]
    if flips:
        times["flipped"] = flips[0].finished_at.timestamp()  # type: ignore[union-attr]
    return times


def deploy(shop: Project, release: str) -> None:
    """Deploy the api `release`; wait while the rollback-window watcher holds the lock
    (`conveyor expire-warm` stopping expired instances refuses other commands meanwhile)."""
    for _ in range(40):
        run = shop.run("deploy", "staging", "-r", f"api={release}", check=False)
        if run.returncode == 0:
            return
        if "locked by conveyor" not in run.stderr:
            break
        time.sleep(0.25)
    raise SystemExit(f"conveyor deploy exited {run.returncode}\n{run.stdout}\n{run.stderr}")


def one_rollback(
    shop: Project, url: str, previous: str, args: argparse.Namespace
) -> dict[str, Any]:
    with OpenLoad(url, args.rate) as load:
        time.sleep(SETTLE_S)
        start = load.clock()
        run = shop.run("rollback", "staging", "--json")
        end = load.clock()
        time.sleep(AFTER_S)
        result = load.stop()
    record = json.loads(run.stdout)
    explained = explain(shop, record["id"])
    steps = explained["steps"]
    boot = sum(s["duration_s"] or 0.0 for s in steps if s["kind"] in ("start", "wait_healthy"))
    checks = sum(s["duration_s"] or 0.0 for s in steps if s["kind"] == "wait_healthy")
    started = any(s["kind"] == "start" for s in steps)
    at, not_yet = switched_at(result, previous, start)
    times = journal(shop, record["id"])
    return {
        "deployment": record["id"],
        "status": record["status"],
        "to_previous_s": round(at - start, 3),
        "command_s": round(end - start, 3),
        "cli_and_planning_s": round(times["created"] - start, 3),
        "until_flip_s": round(times["flipped"] - start, 3) if "flipped" in times else None,
        "flip_to_clients_s": round(at - times["flipped"], 3) if "flipped" in times else None,
        "instances_started": started,
        "boot_s": round(boot, 3) if started else None,
        "wait_healthy_s": round(checks, 3),
        "steps": [(s["kind"], s["duration_s"]) for s in steps],
        "requests_not_on_previous": not_yet,
        "failed_requests": result.failures,
        # (seconds after the command started, status, error) of each failed request
        "failures": [
            (round(x.sent - start, 3), x.status, x.error) for x in result.samples if not x.ok
        ],
        "load": result.summary(),
    }


ABORT_STRATEGY = {
    "type": "canary",
    "steps": [{"set_weight": 50}, {"pause": "10m"}],
    "rollback_window": "0s",
}


def one_abort(
    shop: Project, url: str, stable: str, canary: str, args: argparse.Namespace
) -> dict[str, Any]:
    """(c): a canary of `canary` at 50% sits in its pause; `conveyor abort` from another
    terminal. Seconds from the command's start to all traffic on `stable`."""
    with OpenLoad(url, args.rate) as load:
        deploying = start_cli(shop, "deploy", "staging", "-r", f"api={canary}")
        deadline = time.monotonic() + 60
        while True:
            time.sleep(0.2)
            unfinished = shop.json("status", "staging")
            assert isinstance(unfinished, dict)
            summary = (unfinished["environments"][0].get("unfinished") or {}).get("summary", "")
            if "(pause 600s" in summary:
                break
            if deploying.poll() is not None:
                err = deploying.stderr.read() if deploying.stderr else ""
                if "locked by conveyor" in err and time.monotonic() < deadline:
                    # the rollback-window watcher is stopping expired instances
                    deploying = start_cli(shop, "deploy", "staging", "-r", f"api={canary}")
                    continue
                raise SystemExit(f"conveyor deploy exited {deploying.returncode}: {err}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the canary did not reach its pause: {summary!r}")
        time.sleep(SETTLE_S)
        start = load.clock()
        run = shop.run("abort", "staging", "--json")
        end = load.clock()
        time.sleep(AFTER_S)
        result = load.stop()
    deploying.wait(60)
    record = json.loads(run.stdout)
    at, not_yet = switched_at(result, stable, start)
    times = journal(shop, record["id"], after=start)
    return {
        "deployment": record["id"],
        "status": record["status"],
        "to_previous_s": round(at - start, 3),
        "command_s": round(end - start, 3),
        "until_flip_s": round(times["flipped"] - start, 3) if "flipped" in times else None,
        "deploy_exit_code": deploying.returncode,
        "requests_not_on_previous": not_yet,
        "failed_requests": result.failures,
        "failures": [
            (round(x.sent - start, 3), x.status, x.error) for x in result.samples if not x.ok
        ],
        "load": result.summary(),
    }


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "min": round(min(values), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200, help="requests per second (open loop)")
    parser.add_argument("--repeats", type=int, default=5, help="rollbacks per case")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-rollback-"))
    shop: Project | None = None
    cases: dict[str, list[dict[str, Any]]] = {}
    try:
        shop = make_project(tmp)
        # The CLI as people run it: bytecode cached beside its modules (the e2e
        # helper keeps it in a cache of its own; the instances write none).
        shop.env.pop("PYTHONPYCACHEPREFIX", None)
        url = f"http://{shop.env['SHOP_STAGING_LISTEN']}/api/version"
        shop.configure(
            "staging", {"type": "blue_green", "auto_promote": True, "rollback_window": "10m"}
        )
        v1 = build_api(shop)
        shop.run("deploy", "staging")
        change_code(shop, "v2")
        v2 = build_api(shop)
        print(f"open-loop load {args.rate:g} req/s on {url}; v1 {v1}, v2 {v2}", flush=True)
        for case, (title, window, wait) in CASES.items():
            shop.configure(
                "staging", {"type": "blue_green", "auto_promote": True, "rollback_window": window}
            )
            runs = cases.setdefault(case, [])
            for n in range(args.repeats):
                deploy(shop, v2)
                time.sleep(wait)
                r = one_rollback(shop, url, v1, args)
                runs.append(r)
                boot = f", boot {r['boot_s']:.2f} s" if r["boot_s"] is not None else ""
                print(
                    f"  {title} {n + 1}: all traffic on v1 after {r['to_previous_s']:.3f} s "
                    f"(CLI start-up and planning {r['cli_and_planning_s']:.2f} s, flip done "
                    f"at {r['until_flip_s']:.2f} s{boot}); command {r['command_s']:.2f} s; "
                    f"{r['failed_requests']} failed requests"
                    + (f" ({r['load']})" if r["failed_requests"] else ""),
                    flush=True,
                )
        shop.configure("staging", ABORT_STRATEGY)
        aborts = cases.setdefault("abort", [])
        for n in range(args.repeats):
            r = one_abort(shop, url, v1, v2, args)
            aborts.append(r)
            print(
                f"  {ABORT_TITLE} {n + 1}: all traffic on v1 after {r['to_previous_s']:.3f} s "
                f"(flip done at {r['until_flip_s']:.2f} s); command {r['command_s']:.2f} s "
                f"({r['status']}); {r['failed_requests']} failed requests"
                + (f" ({r['load']})" if r["failed_requests"] else ""),
                flush=True,
            )
    finally:
        if shop is not None:
            shop.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    summary: dict[str, Any] = {}
    for case, runs in cases.items():
        keys = (
            "to_previous_s",
            "command_s",
            "cli_and_planning_s",
            "wait_healthy_s",
            "until_flip_s",
        )
        summary[case] = {
            key: stats([r[key] for r in runs if r.get(key) is not None])
            for key in keys
            if any(r.get(key) is not None for r in runs)
        }
        boots = [r["boot_s"] for r in runs if r.get("boot_s") is not None]
        if boots:
            summary[case]["boot_s"] = stats(boots)
        summary[case]["failed_requests"] = sum(r["failed_requests"] for r in runs)

    inside = summary["inside"]["to_previous_s"]
    boots = [r["boot_s"] for c in ("outside", "expired") for r in cases[c] if r["boot_s"]]
    boot = statistics.median(boots)
    print(f"\nopen-loop load {args.rate:g} req/s; {args.repeats} rollbacks per case")
    print(f"{'':34}{'median':>9}{'max':>9}   (seconds from `conveyor rollback` to all on v1)")
    for case, (title, _, _) in CASES.items():
        s = summary[case]["to_previous_s"]
        print(f"{title:34}{s['median']:>9.3f}{s['max']:>9.3f}")
    a = summary["abort"]["to_previous_s"]
    print(f"{ABORT_TITLE:34}{a['median']:>9.3f}{a['max']:>9.3f}")
    print(f"{'instance boot (start to healthy)':34}{boot:>9.3f}{max(boots):>9.3f}")
    ok_inside = inside["max"] < TARGET_INSIDE_S
    print(
        f"\n(a) inside the window: max {inside['max']:.3f} s (median {inside['median']:.3f}), "
        f"target < {TARGET_INSIDE_S:g} s: {mark(ok_inside)}"
    )
    targets: dict[str, Any] = {
        "inside": {"target_s": TARGET_INSIDE_S, "max": inside["max"], "pass": ok_inside}
    }
    for case in ("outside", "expired"):
        # Each rollback against its own boot time.
        over = [r["to_previous_s"] - r["boot_s"] for r in cases[case] if r["boot_s"] is not None]
        worst = max(over) if over else float("inf")
        ok = worst < TARGET_OUTSIDE_MARGIN_S
        s = summary[case]["to_previous_s"]
        print(
            f"{CASES[case][0]}: max {s['max']:.3f} s (median {s['median']:.3f}); beyond its own "
            f"boot time: median {statistics.median(over):.3f} s, max {worst:.3f} s, target "
            f"< boot + {TARGET_OUTSIDE_MARGIN_S:g} s: {mark(ok)}"
        )
        targets[case] = {
            "target": f"boot + {TARGET_OUTSIDE_MARGIN_S:g} s",
            "max_beyond_boot_s": worst,
            "pass": ok,
        }
    abort = summary["abort"]["to_previous_s"]
    ok_abort = abort["max"] < TARGET_ABORT_S
    print(
        f"(c) abort: max {abort['max']:.3f} s (median {abort['median']:.3f}) from `conveyor "
        f"abort` to all traffic on the stable release, target < {TARGET_ABORT_S:g} s: "
        f"{mark(ok_abort)}"
    )
    targets["abort"] = {"target_s": TARGET_ABORT_S, "max": abort["max"], "pass": ok_abort}
    outside = summary["outside"]["to_previous_s"]["median"]
    ratios = {
        "outside_over_inside": round(outside / inside["median"], 2),
        "inside_over_boot": round(inside["median"] / boot, 2),
    }
    print(
        f"ratios (medians): (b) / (a) = {ratios['outside_over_inside']:.2f}x; "
        f"(a) / boot time = {ratios['inside_over_boot']:.2f}x"
    )
    parts = summary["inside"]
    print(
        "(a) split (medians, from the command's start): CLI start-up and planning until the "
        f"deployment is recorded {parts['cli_and_planning_s']['median']:.3f} s; health checks "
        f"of the warm instances {parts['wait_healthy_s']['median']:.3f} s; weight flip done at "
        f"{parts['until_flip_s']['median']:.3f} s; command exits at "
        f"{parts['command_s']['median']:.3f} s"
    )
    failed = sum(summary[c]["failed_requests"] for c in summary)
    print(f"failed requests during all rollbacks: {failed}")

    report = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rate": args.rate,
        "repeats": args.repeats,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        },
        "cases": cases,
        "summary": summary,
        "boot_s_median": boot,
        "ratios": ratios,
        "targets": targets,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{os.cpu_count()} CPUs; wrote {RESULTS.relative_to(REPO)}"
    )


if __name__ == "__main__":
    main()
