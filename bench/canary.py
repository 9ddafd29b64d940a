"""Canary benchmark: how fast a bad canary is aborted, how much traffic it gets, false aborts.

    .venv/bin/python bench/canary.py [--rate 400] [--repeats 3] [--good 20] [--good-pause 5]
        [--window 60] [--no-variant] [--skip-bad] [--good-against stable|baseline] [--json PATH]

On a throwaway copy of examples/shop (2 api instances behind Caddy), under an
open-loop load of `--rate` requests per second on /api/version (bench/loadgen.py
`OpenLoad`: requests start on schedule whatever the answers' latency, and
every answer's `X-Release` header says which release served it):

(a) a release answering 5% of its requests with 500, and (b) one adding
    300 ms to every request, each deployed `--repeats` times with the canary
    strategy below. Per deploy: seconds from the first request served by the
    canary to the last one (after which all traffic is back on the stable
    release), how much of that was the analysis deciding (its FAIL verdict
    in `conveyor explain --json`), and the share of requests the bad release
    served, over two windows:
      - 60 s of traffic: requests due in the `--window` seconds from the first
        request the bad release served (the load keeps running that long).
        This is the share the 0.5% target is judged on: a minute of the
        service's traffic, of which the bad release took that much;
      - deployment: requests due from the `conveyor deploy` start to its exit,
        printed for completeness: the deployment ends when the canary has
        been taken away, so this share is close to the first step's weight
        whatever the analysis does.
    Baseline, same run: the same bad release deployed with the rolling
    strategy (it gets all the traffic and nothing takes it away until a
    person runs `conveyor rollback`, which is timed too).
    Variant, same run: the same canary with baseline instances (`baseline:
    true`, Kayenta's method), so that the analysis compares the canary with
    a baseline of the canary's share instead of the stable instances' rest
    (`--no-variant` skips it).
(c) `--good` releases that change the api's code but not its behaviour,
    deployed one after the other with the same strategy and analysis but
    `--good-pause` seconds per pause instead of 60 s (about 18 s per deploy):
    how many were aborted (false aborts), and the highest e-value any of
    their sequential tests reached against the 2/alpha it would abort at.

The canary, as a team would run it: steps 2% / 25% / 50% with a 60 s pause
each, and a background analysis over the whole rollout: comparative (errors
and latency against the stable instances), alpha 1%, a snapshot every
second, min_requests 100, duration 5 m. The load is 400 req/s by default,
twice the least the targets allow: the analysis needs a fixed number of
canary errors to abort (two at a 2% share, three at 5%: see
bench/README.md), i.e. about 40 or 60 requests of a release with 5% errors,
so the bad release's share of a minute's traffic falls as the rate grows;
at 200 req/s the 0.5% target allows 60 such requests, the mean a 5% first
step needs.

Prints the figures with PASS/MISS against the targets (abort within 15 s,
under 0.5% of a minute's requests served by the bad release, 0 false
aborts) and writes bench/results/canary.json. The temporary home's
supervisord (Caddy and the instances with it) is stopped at the end, also
on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.loadgen import OpenLoad, OpenLoadResult  # noqa: E402
from tests.support.project import CONVEYOR, Project, make_project  # noqa: E402

RESULTS = REPO / "bench" / "results" / "canary.json"

TARGET_ABORT_S = 15.0
TARGET_SHARE = 0.005
TARGET_FALSE_ABORTS = 0

ANALYSIS = "canary-health"
FIRST_WEIGHT = 2  # percent of the traffic the canary gets first
SETTLE_S = 3.0  # load before each deploy, so that every window starts in steady state
DEPLOY_TIMEOUT_S = 600.0
FAULTS: dict[str, dict[str, object]] = {
    "errors": {"error_rate": 0.05},
    "latency": {"latency_ms": 300},
}
FAULT_TITLES = {"errors": "(a) 5% errors", "latency": "(b) +300 ms"}


def canary_config(pause: str, against: str = "stable") -> tuple[dict[str, Any], Any]:
    """The strategy and analysis a team would use: the canary compared with the stable
    instances. `against="baseline"`: Kayenta's method, baseline instances of the stable
    release with the canary's share, and the analysis compares the canary with them."""
    strategy = {
        "type": "canary",
        "baseline": against == "baseline",
        "analysis": ANALYSIS,
        "steps": [
            {"set_weight": FIRST_WEIGHT},
            {"pause": pause},
            {"set_weight": 25},
            {"pause": pause},
            {"set_weight": 50},
            {"pause": pause},
        ],
        "rollback_window": "10m",
    }
    analysis = {
        "interval": "1s",
        "duration": "5m",
        "min_requests": 100,
        "comparative": True,
        "alpha": "1%",
    }
    return strategy, {ANALYSIS: analysis}


ROLLING = {"type": "rolling", "max_surge": 1, "max_unavailable": 0}


# -- helpers -----------------------------------------------------------------------------


def configure(shop: Project, strategy: dict[str, Any], analysis: Any = None) -> None:
    """Give staging this strategy (and analyses); stop here if conveyor.yml refuses it."""
    shop.configure("staging", strategy, analysis)
    shop.run("validate")


def build_api(shop: Project) -> str:
    built = json.loads(shop.run("build", "--json").stdout)
    return str(next(r["id"] for r in built if r["service"] == "api"))


def change_code(shop: Project, label: str) -> None:
    """A harmless change to the api's code (a new release that behaves the same)."""
    server = shop.root / "api" / "server.py"
    server.write_text(server.read_text() + f"# {label}\n")
    shop.commit(label)


def last_deployment(shop: Project) -> dict[str, Any]:
    history = shop.json("history", "staging", "-n", "1")
    assert isinstance(history, list) and history, history
    return dict(history[0])


def explain(shop: Project, deployment_id: str) -> dict[str, Any]:
    explained = shop.json("explain", deployment_id)
    assert isinstance(explained, dict)
    return explained


def analysis_fail(explained: dict[str, Any]) -> tuple[float | None, str]:
    """Time and message of the first FAIL verdict of the deployment's analyses."""
    for run in explained.get("analyses", []):
        for measurement in run.get("measurements", []):
            verdict = measurement.get("verdict") or {}
            if verdict.get("decision") == "FAIL":
                failing = [
                    c["message"] for c in verdict.get("checks", []) if c.get("decision") == "fail"
                ]
                return float(measurement["time"]), "; ".join(failing) or verdict.get("message", "")
    return None, ""


def max_e_value(explained: dict[str, Any]) -> tuple[float, float]:
    """Highest e-value any sequential test reached, and the value it aborts at."""
    highest, reject_at = 0.0, 0.0
    for run in explained.get("analyses", []):
        for measurement in run.get("measurements", []):
            for check in (measurement.get("verdict") or {}).get("checks", []):
                if check.get("statistic") == "e_value" and check.get("value") is not None:
                    highest = max(highest, float(check["value"]))
                    reject_at = float(check.get("threshold", {}).get("reject_at", reject_at))
    return highest, reject_at


def start_cli(shop: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CONVEYOR, *args],
        cwd=shop.root,
        env=shop.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_answer_from(load: OpenLoad, release: str, seen: int) -> tuple[float | None, int]:
    """Send time of a request answered by `release` among the samples from `seen` on."""
    samples = load.result.samples
    end = len(samples)
    for sample in samples[seen:end]:
        if sample.header == release:
            return sample.sent, end
    return None, end


def deploy_and_watch(
    shop: Project, load: OpenLoad, release: str, window: float
) -> tuple[float, float, int, str]:
    """Deploy `release` under `load`; return when the deploy ended and `window` seconds
    have passed since `release` served its first request. (start, end, exit code, stderr)"""
    start = load.clock()
    proc = start_cli(shop, "deploy", "staging", "-r", f"api={release}")
    first: float | None = None
    seen = 0
    end: float | None = None
    stderr = ""
    while True:
        time.sleep(0.2)
        if first is None:
            first, seen = first_answer_from(load, release, seen)
        if end is None and proc.poll() is not None:
            end = load.clock()
            stderr = proc.stderr.read() if proc.stderr else ""
        now = load.clock()
        if end is not None and (now >= (first if first is not None else end) + window):
            break
        if end is None and now - start > DEPLOY_TIMEOUT_S:
            proc.kill()
            raise SystemExit(f"conveyor deploy did not end within {DEPLOY_TIMEOUT_S:.0f} s")
    assert proc.returncode is not None
    return start, end, proc.returncode, stderr


def exposure(
    result: OpenLoadResult, bad: str, start: float, end: float, window: float
) -> dict[str, Any]:
    """What the bad release served, over the deployment and over `window` s of traffic."""
    served = [s for s in result.samples if s.header == bad]
    during = result.between(start, end)
    figures: dict[str, Any] = {
        "deploy_s": round(end - start, 3),
        "requests_deployment": len(during),
        "bad_deployment": sum(s.header == bad for s in during),
        "share_deployment": sum(s.header == bad for s in during) / max(1, len(during)),
        "bad_requests": len(served),
        "bad_5xx": sum(s.status >= 500 for s in served),
        "failed_deployment": sum(not s.ok for s in during),
    }
    if not served:
        figures.update(first_bad_s=None, exposure_s=None, share_window=0.0, requests_window=0)
        return figures
    first = min(s.sent for s in served)
    last = max(s.sent for s in served)
    in_window = result.between(first, first + window)
    figures.update(
        first_bad=first,
        last_bad=last,
        first_bad_s=round(first - start, 3),  # after the deploy started
        exposure_s=round(last - first, 3),
        requests_window=len(in_window),
        bad_window=sum(s.header == bad for s in in_window),
        share_window=sum(s.header == bad for s in in_window) / max(1, len(in_window)),
        window_complete=bool(result.samples) and result.samples[-1].due >= first + window - 0.1,
    )
    return figures


def pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- scenarios ---------------------------------------------------------------------------


def bad_canary(
    shop: Project, url: str, bad: str, stable: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One deploy of a bad release with the canary strategy as configured now."""
    with OpenLoad(url, args.rate) as load:
        time.sleep(SETTLE_S)
        start, end, code, stderr = deploy_and_watch(shop, load, bad, args.window)
        result = load.stop()
    record = last_deployment(shop)
    figures = exposure(result, bad, start, end, args.window)
    explained = explain(shop, record["id"])
    fail_time, fail_message = analysis_fail(explained)
    figures.update(
        deployment=record["id"],
        status=record["status"],
        exit_code=code,
        load=result.summary(),
        analysis_fail_message=fail_message,
        conclusion=explained.get("conclusion"),
    )
    if fail_time is not None and figures.get("first_bad") is not None:
        figures["detect_s"] = round(fail_time - figures["first_bad"], 3)
        # Negative when the canary got no request between the FAIL and the flip.
        figures["react_s"] = round(max(0.0, figures["last_bad"] - fail_time), 3)
    if record["status"] != "aborted":
        # Not aborted: the bad release was promoted. Put the stable one back.
        print(f"    not aborted ({record['status']}): {stderr.strip()[-300:]}", flush=True)
        shop.run("rollback", "staging", "--to", f"api={stable}", timeout=DEPLOY_TIMEOUT_S)
    return figures


def bad_rolling(
    shop: Project, url: str, bad: str, stable: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The baseline: the bad release deployed with the rolling strategy, then rolled back
    by hand `--window` seconds after it served its first request."""
    with OpenLoad(url, args.rate) as load:
        time.sleep(SETTLE_S)
        start, end, code, _ = deploy_and_watch(shop, load, bad, args.window)
        rollback_start = load.clock()
        shop.run("rollback", "staging", "--to", f"api={stable}", timeout=DEPLOY_TIMEOUT_S)
        rollback_end = load.clock()
        time.sleep(2.0)
        result = load.stop()
    figures = exposure(result, bad, start, end, args.window)
    rolled_back = [s for s in result.samples if s.header == bad and s.sent >= rollback_start]
    figures.update(
        status=f"deploy exited {code}; no automatic abort",
        exit_code=code,
        load=result.summary(),
        rollback_s=round(rollback_end - rollback_start, 3),
        # From the `conveyor rollback` start to the last request the bad release served.
        rollback_to_stable_s=round(max(s.sent for s in rolled_back) - rollback_start, 3)
        if rolled_back
        else 0.0,
    )
    return figures


def good_releases(shop: Project, url: str, count: int, args: argparse.Namespace) -> dict[str, Any]:
    """(c): `count` good releases one after the other under load; false aborts."""
    deploys: list[dict[str, Any]] = []
    with OpenLoad(url, args.rate) as load:
        time.sleep(SETTLE_S)
        for n in range(1, count + 1):
            change_code(shop, f"good release {n}")
            release = build_api(shop)
            started = time.monotonic()
            at = load.clock()
            run = shop.run(
                "deploy", "staging", "-r", f"api={release}", check=False, timeout=DEPLOY_TIMEOUT_S
            )
            took = time.monotonic() - started
            record = last_deployment(shop)
            explained = explain(shop, record["id"])
            highest, reject_at = max_e_value(explained)
            _, message = analysis_fail(explained)
            deploys.append(
                {
                    "release": release,
                    "deployment": record["id"],
                    "status": record["status"],
                    "started": at,
                    "exit_code": run.returncode,
                    "deploy_s": round(took, 2),
                    "max_e_value": highest,
                    "reject_at": reject_at,
                    "fail_message": message,
                }
            )
            print(
                f"  good {n:>2}/{count}: {record['status']:<9} {took:5.1f} s, highest e-value "
                f"{highest:.3g} (aborts at {reject_at:g})" + (f": {message}" if message else ""),
                flush=True,
            )
            if record["status"] != "succeeded":
                print(f"    {run.stderr.strip()[-400:]}", flush=True)
        result = load.stop()
    aborted = [d for d in deploys if d["status"] == "aborted"]
    return {
        "deploys": deploys,
        "false_aborts": len(aborted),
        "not_succeeded": sum(d["status"] != "succeeded" for d in deploys),
        "max_e_value": max((d["max_e_value"] for d in deploys), default=0.0),
        "reject_at": max((d["reject_at"] for d in deploys), default=0.0),
        "median_deploy_s": statistics.median(d["deploy_s"] for d in deploys) if deploys else 0,
        "requests": result.requests,
        "failed_requests": result.failures,
        # (wall-clock send time, status, error) of each failed request
        "failures": [(x.sent, x.status, x.error) for x in result.samples if not x.ok],
        "load": result.summary(),
    }


# -- report ------------------------------------------------------------------------------


def spread(runs: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    got = [float(r[key]) for r in runs if r.get(key) is not None]
    if not got:
        return None
    return {"median": statistics.median(got), "max": max(got), "min": min(got)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    aborted = sum(r["status"] == "aborted" for r in runs)
    out: dict[str, Any] = {"runs": len(runs), "aborted": aborted}
    for key in ("exposure_s", "detect_s", "react_s", "share_deployment", "share_window"):
        out[key] = spread(runs, key)
    return out


def describe_run(r: dict[str, Any], window: str) -> str:
    return (
        f"{r['status']}: the canary served {r['bad_requests']} requests ({r['bad_5xx']} 5xx) "
        f"over {secs(r.get('exposure_s'))} (analysis FAIL after {secs(r.get('detect_s'))}, "
        f"traffic back {secs(r.get('react_s'))} later); share {pct(r['share_deployment'])} of "
        f"{r['requests_deployment']} in the deployment ({r['deploy_s']:.1f} s), "
        f"{pct(r['share_window'])} of {r['requests_window']} in {window}"
    )


def describe_rolling(r: dict[str, Any], window: str) -> str:
    return (
        f"served {r['bad_requests']} requests ({r['bad_5xx']} 5xx); share "
        f"{pct(r['share_deployment'])} of {r['requests_deployment']} in the deployment "
        f"({r['deploy_s']:.1f} s), {pct(r['share_window'])} of {r['requests_window']} in "
        f"{window}; no automatic abort; `conveyor rollback` then took {r['rollback_s']:.1f} s "
        f"(last bad request {r['rollback_to_stable_s']:.1f} s after its start)"
    )


def row(name: str, figures: dict[str, float] | None, fmt: Any, target: str = "") -> str:
    if figures is None:
        return f"  {name:<52}{'n/a':>9}{'n/a':>9}  {target}"
    return f"  {name:<52}{fmt(figures['median']):>9}{fmt(figures['max']):>9}  {target}"


VARIANT_TITLES = {
    "stable": "canary against the stable instances",
    "baseline": "canary against a baseline (Kayenta's method)",
}


def report_bad(kind: str, entry: dict[str, Any], window: str) -> dict[str, Any]:
    """Print one fault's figures; the targets are judged on the first variant run."""
    variants = list(entry["canary"])
    headline = variants[0]
    runs = entry["canary"][headline]["runs"]
    s = summarize(runs)
    aborted = s["aborted"] == len(runs)
    print(f"\n{FAULT_TITLES[kind]}, {VARIANT_TITLES[headline]} ({len(runs)} runs)")
    print(f"  {'':<52}{'median':>9}{'max':>9}")
    worst = s["exposure_s"]["max"] if s["exposure_s"] else None
    ok_time = aborted and worst is not None and worst < TARGET_ABORT_S
    print(
        row(
            "first request served by the canary to its last one",
            s["exposure_s"],
            secs,
            f"target < {TARGET_ABORT_S:.0f} s ({s['aborted']}/{len(runs)} aborted): "
            f"{mark(ok_time)}",
        )
    )
    print(row("  of which until the analysis said FAIL", s["detect_s"], secs))
    print(row("  then until the last canary request", s["react_s"], secs))
    share_w = s["share_window"]["max"]
    print(
        row(
            f"share served by the bad release, {window} window",
            s["share_window"],
            pct,
            f"target < {pct(TARGET_SHARE, 1)}: {mark(share_w < TARGET_SHARE)}",
        )
    )
    print(
        row(
            "share served by the bad release, deployment window",
            s["share_deployment"],
            pct,
            "(about the first step's weight, whatever the analysis does)",
        )
    )
    rolling = entry["rolling"]
    print(f"  baseline, rolling deploy: {describe_rolling(rolling, window)}")
    base = rolling["share_window"]
    ratio = s["share_window"]["median"] / base if base else None
    if ratio is not None:
        print(f"  canary / rolling, share in the {window} window (medians): {ratio:.4f}x")
    for variant in variants[1:]:
        d = summarize(entry["canary"][variant]["runs"])
        print(f"  variant, {VARIANT_TITLES[variant]} ({d['runs']} runs):")
        print(
            row(
                "first request served by the canary to its last one",
                d["exposure_s"],
                secs,
                f"({d['aborted']}/{d['runs']} aborted)",
            )
        )
        print(row("  of which until the analysis said FAIL", d["detect_s"], secs))
        print(row(f"share served by the bad release, {window} window", d["share_window"], pct))
        print(row("share served by the bad release, deployment window", d["share_deployment"], pct))
    return {
        "variant": headline,
        "abort_within_s": {"target": TARGET_ABORT_S, "max": worst, "pass": ok_time},
        "share_window": {"target": TARGET_SHARE, "max": share_w, "pass": share_w < TARGET_SHARE},
        "share_deployment_max": s["share_deployment"]["max"] if s["share_deployment"] else None,
        "ratio_share_window_to_rolling": ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=400, help="requests per second (open loop)")
    parser.add_argument("--repeats", type=int, default=3, help="deploys of each bad release")
    parser.add_argument("--good", type=int, default=20, help="good releases for (c)")
    parser.add_argument("--good-pause", type=float, default=5.0, help="seconds per pause in (c)")
    parser.add_argument(
        "--good-against",
        choices=["stable", "baseline"],
        default="stable",
        help="what the analysis of (c) compares with",
    )
    parser.add_argument("--window", type=float, default=60.0, help="seconds of traffic")
    parser.add_argument(
        "--no-variant", action="store_true", help="skip the canary compared with a baseline"
    )
    parser.add_argument("--skip-bad", action="store_true", help="only run (c)")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the figures")
    args = parser.parse_args()
    window = f"{args.window:g} s"

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-canary-"))
    shop: Project | None = None
    report: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rate": args.rate,
        "windows": {
            "deployment": "requests due from the `conveyor deploy` start to its exit",
            "window": f"requests due in the {window} from the first request the bad release served",
        },
    }
    scenarios: dict[str, Any] = {}
    good: dict[str, Any] | None = None
    try:
        shop = make_project(tmp)
        # The CLI as people run it: bytecode cached beside its modules (the e2e
        # helper keeps it in a cache of its own; the instances write none).
        shop.env.pop("PYTHONPYCACHEPREFIX", None)
        url = f"http://{shop.env['SHOP_STAGING_LISTEN']}/api/version"
        strategy, analysis = canary_config("60s")
        report["canary_config"] = {"strategy": strategy, "analysis": analysis}
        configure(shop, strategy, analysis)
        stable = build_api(shop)
        shop.run("deploy", "staging")
        bad: dict[str, str] = {}
        for kind, faults in FAULTS.items():
            shop.write_faults(**faults)
            change_code(shop, f"bad release: {kind}")
            bad[kind] = build_api(shop)
        shop.clear_faults()
        print(
            f"open-loop load {args.rate:g} req/s on {url}; stable api {stable}; "
            f"bad: {bad['errors']} (5% errors), {bad['latency']} (+300 ms)",
            flush=True,
        )

        variants = ["stable"] + ([] if args.no_variant else ["baseline"])
        for kind in [] if args.skip_bad else list(FAULTS):
            entry: dict[str, Any] = {"release": bad[kind], "canary": {}}
            configure(shop, ROLLING)
            entry["rolling"] = bad_rolling(shop, url, bad[kind], stable, args)
            print(
                f"{FAULT_TITLES[kind]}, rolling: {describe_rolling(entry['rolling'], window)}",
                flush=True,
            )
            for name in variants:
                configure(shop, *canary_config("60s", name))
                runs = []
                for n in range(args.repeats):
                    runs.append(bad_canary(shop, url, bad[kind], stable, args))
                    print(
                        f"{FAULT_TITLES[kind]}, canary against {name}, {n + 1}: "
                        f"{describe_run(runs[-1], window)}",
                        flush=True,
                    )
                entry["canary"][name] = {"runs": runs, "summary": summarize(runs)}
            scenarios[kind] = entry
        report["bad"] = scenarios

        if args.good:
            strategy, analysis = canary_config(f"{args.good_pause:g}s", args.good_against)
            configure(shop, strategy, analysis)
            print(
                f"(c) {args.good} good releases, pauses of {args.good_pause:g} s, analysis "
                f"against {args.good_against}",
                flush=True,
            )
            good = good_releases(shop, url, args.good, args)
            good["config"] = {"strategy": strategy, "analysis": analysis}
            report["good"] = good
    finally:
        if shop is not None:
            shop.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    report["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }
    print(
        f"\nopen-loop load {args.rate:g} req/s; first step {FIRST_WEIGHT}% (with a baseline at "
        f"{FIRST_WEIGHT}% too in the baseline variant), analysis every 1 s, alpha 1%"
    )
    print("windows: deployment = requests due from the `conveyor deploy` start to its exit;")
    print(f"         {window} = requests due in the {window} from the bad release's first one")
    targets: dict[str, Any] = {}
    for kind, entry in scenarios.items():
        targets[kind] = report_bad(kind, entry, window)

    if good is not None:
        ok = good["false_aborts"] == TARGET_FALSE_ABORTS and good["not_succeeded"] == 0
        print(
            f"\n(c) {args.good} good releases (pauses of {args.good_pause:g} s, analysis against "
            f"{args.good_against}): {good['false_aborts']} aborted, {good['not_succeeded']} not "
            f"promoted; target {TARGET_FALSE_ABORTS} false aborts: {mark(ok)}"
        )
        print(
            f"  highest e-value of any test: {good['max_e_value']:.3g} (aborts at "
            f"{good['reject_at']:g}); median deploy {good['median_deploy_s']:.1f} s; "
            f"{good['failed_requests']} of {good['requests']} requests failed"
        )
        print(
            f"  guarantee: each analysis aborts a release no worse than the one it is compared "
            f"with with probability <= 1%: <= {0.01 * args.good:.2f} false aborts expected "
            f"over {args.good} deploys"
        )
        targets["false_aborts"] = {
            "target": TARGET_FALSE_ABORTS,
            "value": good["false_aborts"],
            "pass": ok,
        }
    report["targets"] = targets
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nload average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{os.cpu_count()} CPUs; wrote {args.json}"
    )


if __name__ == "__main__":
    main()
