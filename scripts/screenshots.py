"""Screenshots of the dashboard for the README: docs/screenshots/*.png.

    scripts/screenshots [--out docs/screenshots]

On a throwaway copy of examples/shop: v1 deployed to staging, the pipeline run once,
then staging made a canary (20 %, then an analysis against stable) that needs one
approval. Through `conveyor server`'s API, an admin deploys v2, another user approves
it, and it is promoted after its analysis under load; then v3, which fails 4 % of its
requests, is approved and aborted by its analysis (the sequential test against stable).
A real headless Chromium then logs in and takes a picture of each page. About two
minutes; the home's supervisord is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from tests.support.dashboard import Server, call, chromium, log_in, serve, wait_for  # noqa: E402
from tests.support.load import traffic  # noqa: E402
from tests.support.project import Project, make_project  # noqa: E402

ANALYSIS = {
    "errors": {
        "interval": "500ms",
        "duration": "8s",
        "max_duration": "60s",
        "min_requests": 40,
        "thresholds": ["p95 < 500ms"],
        "comparative": {"max_relative_increase": "20%"},
    }
}
MAX_HEIGHT = 1300  # pixels: the top of a long page says what it is
CANARY = {
    "type": "canary",
    "steps": [{"set_weight": 20}, {"analysis": "errors"}, {"set_weight": 100}],
    "rollback_window": "10m",
}


def make_canary(shop: Project) -> None:
    path = shop.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    config["environments"]["staging"]["strategy"] = CANARY
    config["environments"]["staging"]["approvals"] = {"required": 1}
    config["analysis"] = {**config.get("analysis", {}), **ANALYSIS}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    shop.commit("staging: a canary, with an approval")


def new_version(shop: Project, marker: str, **faults: Any) -> None:
    (shop.root / "api" / "CHANGES").write_text(marker + "\n")
    if faults:
        shop.write_faults(**faults)
    else:
        shop.clear_faults()
    shop.commit(marker)
    shop.run("build")


def deploy_approved(server: Server, lead: str, alice: str) -> str:
    """Deploy staging as `lead`, approve it as `alice`, wait for its end; its id."""
    status, started = call(server.base, "POST", "/api/environments/staging/deploy", lead, {})
    assert status in (200, 202), started
    deployment = str(started["id"])
    path = f"/api/deployments/{deployment}/approve"
    status, approved = call(server.base, "POST", path, alice, {"message": "looks good"})
    assert status == 200, approved

    def ended() -> bool:
        status, explained = call(server.base, "GET", f"/api/deployments/{deployment}", lead)
        return status == 200 and explained["status"] not in ("running", "awaiting_approval")

    wait_for(f"deployment {deployment} to end", ended, 180, every=0.5)
    return deployment


def shoot(driver: Any, base: str, path: str, out: Path, width: int = 1280) -> None:
    """The page at `path`, its whole height up to `MAX_HEIGHT` pixels."""
    driver.set_window_size(width, 900)
    driver.get(base + path)
    time.sleep(0.5)  # the live stream's first update
    height = min(int(driver.execute_script("return document.body.scrollHeight")), MAX_HEIGHT)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": max(height, 400), "scale": 1},
        },
    )
    out.write_bytes(base64.b64decode(shot["data"]))
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    print(f"{shown}: {out.stat().st_size // 1024} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="conveyor-screenshots-") as tmp:
        shop = make_project(Path(tmp))
        shop.env["CONVEYOR_USER"] = "ana@example.com"
        try:
            shop.run("build")
            shop.run("deploy", "staging", "-m", "first release")
            shop.run("pipeline", "run", check=False, timeout=300)
            make_canary(shop)
            new_version(shop, "v2")
            with serve(shop) as server:
                lead = server.token("lead@example.com", "admin")
                alice = server.token("alice@example.com", "approver")
                with traffic(f"http://{shop.env['SHOP_STAGING_LISTEN']}/api/version", clients=2):
                    deploy_approved(server, lead, alice)
                    new_version(shop, "v3", error_rate=0.04)
                    bad = deploy_approved(server, lead, alice)
                new_version(shop, "v4")
                status, waiting = call(
                    server.base, "POST", "/api/environments/staging/deploy", lead, {}
                )
                assert status in (200, 202), waiting
                with chromium() as driver:
                    driver.get(server.base + "/login")
                    shoot(driver, server.base, "/login", args.out / "login.png")
                    log_in(driver, server.base, alice)
                    shoot(driver, server.base, "/environments", args.out / "environments.png")
                    shoot(driver, server.base, "/environments/staging", args.out / "history.png")
                    shoot(driver, server.base, f"/deployments/{bad}", args.out / "deployment.png")
                    shoot(
                        driver,
                        server.base,
                        f"/deployments/{waiting['id']}",
                        args.out / "approval.png",
                    )
                    path = f"/deployments/{waiting['id']}/confirm/approve"
                    shoot(driver, server.base, path, args.out / "confirm.png")
                    shoot(driver, server.base, "/pipeline", args.out / "pipeline.png")
                    shoot(driver, server.base, "/dora", args.out / "dora.png")
                    shoot(driver, server.base, "/alerts", args.out / "alerts.png")
        finally:
            shop.shutdown()


if __name__ == "__main__":
    main()
