"""Dashboard and API benchmark of `conveyor server`.

    .venv/bin/python bench/dashboard.py [--history 1000] [--seconds 5] [--samples 40]

On a throwaway copy of examples/shop with staging deployed (supervisord, Caddy, two
api and two web instances), `conveyor server` runs in its own process with 1,000
deployments in the history (`--history`, written to the store as a busy team's year
would leave them) and one canary deployment with a 2-minute analysis (120
measurements) for its deployment page. Figures, each beside a baseline of the same run:

- first page load of the environments page and of that deployment page: the server's
  answer (median of 20 GETs over HTTP, a fresh connection each) and, in a real headless
  Chromium, navigation start to the load event with nothing cached; the bytes of the
  page with its CSS and JS. Baseline: `GET /healthz`. Targets < 300 ms and < 200 KB.
- live timeline delay: from a step journaled in the store (by this process, as a
  deploying CLI would) to its `entry` event read from `GET /api/deployments/{id}/events`,
  `--samples` times. Baseline: the HTTP round trip of `GET /healthz`. Target < 500 ms.
- API requests/s of `GET /api/environments` with the history in the store: 4 keep-alive
  clients for `--seconds`; baseline `GET /healthz` the same way.
- the server's memory at rest (VmRSS) after those requests, beside a bare
  `python -c 'import fastapi'`. Target < 150 MB.

Writes bench/results/dashboard.json; stops the server and the home's supervisord at
the end, also on failure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests.support.dashboard import chromium, log_in, serve  # noqa: E402
from tests.support.project import Project, make_project  # noqa: E402

RESULTS = REPO / "bench" / "results"
CANARY_ID = "20261206-120000-c4a7"


def median_ms(values: list[float]) -> float:
    return round(1000 * statistics.median(values), 1)


def fill_history(project: Project, count: int) -> str:
    """`count` finished deployments of staging and one canary with a 2-minute analysis."""
    from conveyor.store import open_store
    from conveyor.store.records import SUCCEEDED, DeploymentRecord, MeasurementRecordRow

    store = open_store(f"sqlite:///{project.home / 'state.db'}")
    try:
        latest = store.list_deployments("staging", limit=1)[0]
        start = datetime.now(UTC) - timedelta(days=365)
        for n in range(count):
            at = start + timedelta(hours=8 * n)
            store.create_deployment(
                replace(
                    latest,
                    id=f"{at:%Y%m%d-%H%M%S}-{n:04x}",
                    started_at=at,
                    finished_at=at + timedelta(seconds=40),
                    reason=f"change {n}",
                )
            )
        canary: DeploymentRecord = replace(
            latest,
            id=CANARY_ID,
            strategy="canary",
            status=SUCCEEDED,
            started_at=datetime.now(UTC) - timedelta(minutes=3),
            finished_at=datetime.now(UTC),
        )
        store.create_deployment(canary)
        for index, (kind, text) in enumerate(
            [
                ("start", "start api x2"),
                ("wait_healthy", "wait for api"),
                ("set_weights", "api: canary 20%"),
                ("analyze", "analysis errors"),
                ("set_weights", "api: canary 100%"),
                ("mark_current", "api is current"),
                ("drain", "drain api"),
                ("keep_warm", "keep api warm 10m"),
            ],
            start=1,
        ):
            store.step_started(CANARY_ID, index, kind, text)
            store.step_finished(CANARY_ID, index, "done")
        begin = time.time() - 150
        for seq in range(120):
            canary_stats = {
                "requests": 40 * seq,
                "errors": seq // 10,
                "latency_ms": {"offset": 8, "counts": [30 * seq, 9 * seq, seq]},
            }
            stable_stats = {
                "requests": 160 * seq,
                "errors": seq // 5,
                "latency_ms": {"offset": 8, "counts": [130 * seq, 28 * seq, 2 * seq]},
            }
            e_value = 1.0 / (1 + seq / 30)
            store.add_measurement(
                MeasurementRecordRow(
                    deployment_id=CANARY_ID,
                    step_index=4,
                    analysis="errors",
                    run=1,
                    seq=seq,
                    time=datetime.now(UTC),
                    data={
                        "seq": seq,
                        "time": begin + seq,
                        "releases": {
                            "canary": canary_stats,
                            "stable": stable_stats,
                            "baseline": {"requests": 0, "errors": 0},
                        },
                        "verdict": {
                            "decision": "PASS" if seq == 119 else "CONTINUE",
                            "message": "ok",
                            "checks": [
                                {
                                    "name": "error_rate_vs_stable",
                                    "statistic": "e_value",
                                    "value": e_value,
                                    "threshold": {"against": "stable", "reject_at": 40.0},
                                },
                                {
                                    "name": "latency_vs_stable",
                                    "statistic": "e_value",
                                    "value": e_value * 1.5,
                                    "threshold": {"against": "stable", "reject_at": 40.0},
                                },
                            ],
                        },
                    },
                )
            )
    finally:
        store.close()
    return CANARY_ID


def page_loads(base: str, token: str, paths: dict[str, str]) -> dict[str, Any]:
    """Server answer time (fresh connection each), bytes, and a real browser's load time."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base) as client:
        form = client.get("/login").text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        client.post("/login", data={"csrf": csrf, "token": token})
        cookies = dict(client.cookies)
    assets = sum(
        len(httpx.get(f"{base}/static/{n}").content) for n in ("dashboard.css", "dashboard.js")
    )
    host, port = base.removeprefix("http://").split(":")
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    for name, path in {"healthz": "/healthz", **paths}.items():
        times, size = [], 0
        for _ in range(20):
            started = time.perf_counter()
            connection = http.client.HTTPConnection(host, int(port), timeout=60)
            connection.request("GET", path, headers={"Cookie": cookie})
            answer = connection.getresponse()
            body = answer.read()
            times.append(time.perf_counter() - started)
            connection.close()
            assert answer.status == 200, (path, answer.status)
            size = len(body)
        out[name] = {
            "server_ms": median_ms(times),
            "html_bytes": size,
            "bytes_with_assets": size + (assets if name != "healthz" else 0),
        }
    with chromium() as driver:
        log_in(driver, base, token)
        for name, path in {"healthz": "/healthz", **paths}.items():
            loads = []
            for _ in range(5):
                driver.execute_cdp_cmd("Network.clearBrowserCache", {})
                driver.get(base + path)
                loads.append(
                    driver.execute_script(
                        "var t = performance.getEntriesByType('navigation')[0];"
                        "return t.loadEventEnd - t.startTime;"
                    )
                    / 1000
                )
            out[name]["browser_ms"] = median_ms(loads)
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def live_delay(project: Project, base: str, token: str, samples: int, pid: int) -> dict[str, Any]:
    """Seconds from a journaled step to its event on the stream of the deployment."""
    from conveyor.store import open_store
    from conveyor.store.records import RUNNING

    store = open_store(f"sqlite:///{project.home / 'state.db'}")
    running = "20261206-130000-11ee"
    done = store.get_deployment(CANARY_ID)
    assert done is not None
    store.create_deployment(replace(done, id=running, status=RUNNING, finished_at=None))
    arrived: dict[str, float] = {}
    ready = threading.Event()

    def follow() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.stream(
            "GET", f"{base}/api/deployments/{running}/events", headers=headers, timeout=None
        ) as answer:
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    key = json.loads(line[6:]).get("key")
                    if key:
                        arrived[str(key)] = time.perf_counter()
                    ready.set()
                if "end" in arrived:
                    return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert ready.wait(30)
    delays = []
    try:
        for index in range(1, samples + 1):
            written = time.perf_counter()
            store.step_started(running, index, "pause", f"pause {index}")
            deadline = time.monotonic() + 10
            while f"step-{index}" not in arrived and time.monotonic() < deadline:
                time.sleep(0.002)
            delays.append(arrived[f"step-{index}"] - written)
            time.sleep(0.05 + (index % 7) * 0.013)  # not in step with the server's polls
        before, idle_started = cpu_s(pid), time.monotonic()
        time.sleep(10)  # the page stays open; nothing is written
        idle = (cpu_s(pid) - before) / (time.monotonic() - idle_started)
        store.update_deployment(running, status="succeeded", finished=True)
        reader.join(10)
    finally:
        store.close()
    with httpx.Client(base_url=base) as client:
        rtts = []
        for _ in range(samples):
            started = time.perf_counter()
            client.get("/healthz")
            rtts.append(time.perf_counter() - started)
    return {
        "median_ms": median_ms(delays),
        "max_ms": round(1000 * max(delays), 1),
        "p90_ms": round(1000 * sorted(delays)[int(0.9 * len(delays))], 1),
        "healthz_rtt_ms": median_ms(rtts),
        "samples": len(delays),
        "idle_stream_cpu_percent": round(100 * idle, 2),
    }


def throughput(
    base: str, path: str, token: str, seconds: float, clients: int = 4
) -> dict[str, Any]:
    """Requests per second of `clients` keep-alive clients for `seconds`, the median
    answer time and the requests that failed (an error status or no answer in 30 s)."""
    times: list[float] = []
    failed = [0]
    stop = time.monotonic() + seconds

    def hammer() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    answer = c.get(path)
                    ok = answer.status_code == 200
                    if not ok and not failed[0]:
                        print(f"GET {path}: {answer.status_code} {answer.text[:300]}")
                except httpx.HTTPError as exc:
                    ok = False
                    if not failed[0]:
                        print(f"GET {path}: {exc!r}")
                if ok:
                    times.append(time.perf_counter() - started)
                else:
                    failed[0] += 1

    threads = [threading.Thread(target=hammer) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "rps": round(len(times) / (time.monotonic() - started), 1),
        "median_ms": median_ms(times) if times else None,
        "failed": failed[0],
    }


def rss_mb(pid: int) -> float:
    """The resident memory of `pid` (the `conveyor server` process)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


def bare_fastapi_rss_mb() -> float:
    """The VmRSS of a fresh Python that imported FastAPI, and nothing else."""
    code = (
        "import fastapi, pathlib; print(next(l.split()[1] for l in "
        "pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS:')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return round(int(out.stdout.strip()) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-dashboard-") as tmp:
        shop = make_project(Path(tmp))
        try:
            shop.run("build")
            shop.run("deploy", "staging")
            canary = fill_history(shop, args.history)
            with serve(shop) as server:
                admin = server.token("bench", "admin")
                pages = page_loads(
                    server.base,
                    admin,
                    {"environments": "/environments", "deployment": f"/deployments/{canary}"},
                )
                delay = live_delay(shop, server.base, admin, args.samples, server.process.pid)
                healthz_rps = throughput(server.base, "/healthz", admin, args.seconds)
                env_rps = throughput(server.base, "/api/environments", admin, args.seconds)
                time.sleep(2)
                server_rss = rss_mb(server.process.pid)
            bare_rss = bare_fastapi_rss_mb()
        finally:
            shop.shutdown()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    result = {
        "load_average": load,
        "when": datetime.now(UTC).isoformat(),
        "machine": platform.platform(),
        "history": args.history,
        "pages": pages,
        "live_delay": delay,
        "rps": {"healthz": healthz_rps, "environments": env_rps},
        "rss_mb": {"server": server_rss, "bare_fastapi": bare_rss},
    }
    base = pages["healthz"]
    print(f"history: {args.history} deployments in the store; load average {load}")
    for name in ("environments", "deployment"):
        p = pages[name]
        ratio = p["server_ms"] / base["server_ms"]
        print(
            f"{name:>12} page: server {p['server_ms']} ms ({ratio:.1f}x "
            f"/healthz {base['server_ms']} ms), Chromium load {p['browser_ms']} ms "
            f"(/healthz {base['browser_ms']} ms), {p['html_bytes'] / 1024:.1f} KB HTML, "
            f"{p['bytes_with_assets'] / 1024:.1f} KB with CSS and JS  "
            f"[{'PASS' if p['browser_ms'] < 300 and p['bytes_with_assets'] < 200_000 else 'MISS'}"
            " < 300 ms, < 200 KB]"
        )
    print(
        f"live timeline delay: median {delay['median_ms']} ms, p90 {delay['p90_ms']} ms, max "
        f"{delay['max_ms']} ms over {delay['samples']} steps (/healthz round trip "
        f"{delay['healthz_rtt_ms']} ms)  [{'PASS' if delay['max_ms'] < 500 else 'MISS'} < 500 ms]"
    )
    print(
        f"an open deployment page with nothing new: {delay['idle_stream_cpu_percent']}% of a core"
    )
    print(
        f"GET /api/environments: {env_rps['rps']} req/s, median {env_rps['median_ms']} ms, "
        f"{env_rps['failed']} failed ({100 * env_rps['rps'] / healthz_rps['rps']:.1f}% of "
        f"/healthz: {healthz_rps['rps']} req/s, median {healthz_rps['median_ms']} ms), "
        "4 keep-alive clients"
    )
    print(
        f"server RSS at rest: {server_rss} MB ({server_rss / bare_rss:.1f}x a bare "
        f"`import fastapi`, {bare_rss} MB)  [{'PASS' if server_rss < 150 else 'MISS'} < 150 MB]"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
