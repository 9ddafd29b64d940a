"""End to end: environment policies on the shop (promote_from, branches, windows, approvals)."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from tests.e2e.test_shop import build, change_api, get_json, status
from tests.support.project import CONVEYOR, Project, git
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow

APPROVER = "approver@example.com"


def set_env(shop: Project, environment: str, **settings: Any) -> None:
    path = shop.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    config["environments"][environment].update(settings)
    if "groups" in settings:
        config["groups"] = config["environments"][environment].pop("groups")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    shop.commit(f"{environment}: {sorted(settings)}")


def env_url(shop: Project, environment: str) -> str:
    return f"http://{shop.env[f'SHOP_{environment.upper()}_LISTEN']}/api/version"


def last(shop: Project, environment: str) -> dict[str, Any]:
    history = shop.json("history", environment, "-n", "1")
    assert isinstance(history, list)
    return dict(history[0]) if history else {}


def test_production_takes_only_what_staging_ran_via_promote(shop: Project) -> None:
    # The shop's production also wants the pipeline and an approval (the demo shows them).
    set_env(shop, "production", require_pipeline=False, approvals=None, strategy="rolling")
    v1 = build(shop)
    refused = shop.run("deploy", "production", check=False)
    assert refused.returncode == 1 and "production refuses this deploy" in refused.stderr
    assert f"api {v1['api']} has not succeeded in staging" in refused.stderr
    assert "conveyor promote staging production" in refused.stderr
    shop.run("deploy", "staging")
    shop.run("promote", "staging", "production")
    assert get_json(env_url(shop, "production"))["release"] == v1["api"]
    record = last(shop, "production")
    assert record["releases"] == last(shop, "staging")["releases"]
    assert record["reason"] == "promoted from staging"

    change_api(shop, "v2")
    v2 = build(shop)
    shop.run("deploy", "staging")
    shop.run("promote", "staging", "production", "--service", "web")  # web did not change
    assert get_json(env_url(shop, "production"))["release"] == v1["api"]
    shop.run("promote", "staging", "production", "--service", "api")
    assert get_json(env_url(shop, "production"))["release"] == v2["api"]


def test_branches_and_windows_refuse_with_what_to_do(shop: Project) -> None:
    today = datetime.now(UTC)
    other_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(today.weekday() + 3) % 7]
    set_env(
        shop,
        "staging",
        branches=["main"],
        windows=[{"days": [other_day], "start": "10:00", "end": "11:00", "timezone": "UTC"}],
    )
    git(shop.root, "checkout", "-q", "-b", "feature/login")
    change_api(shop, "feature")
    build(shop)
    refused = shop.run("deploy", "staging", check=False)
    assert refused.returncode == 1
    assert "is on feature/login, not on a branch allowed here (main)" in refused.stderr
    assert f"outside the deploy windows ({other_day} 10:00-11:00 UTC)" in refused.stderr
    opening = (today + timedelta(days=3)).strftime("%Y-%m-%d 10:00 UTC")
    assert f"next allowed at {opening}" in refused.stderr
    record = last(shop, "staging")  # in the history, with every reason
    assert record["status"] == "refused" and record["finished_at"] is not None
    assert (
        "is on feature/login" in record["error"]
        and "outside the deploy windows" in (record["error"])
    )
    shown = shop.run("history", "staging").stdout
    assert f"{record['id']}  deploy  refused" in shown
    assert f"staging refuses this deploy: … conveyor explain {record['id']}" in shown
    explained = shop.run("explain", record["id"]).stdout
    assert "conclusion: refused before anything changed: staging refuses this deploy" in explained
    assert "not on a branch allowed here (main)" in explained
    assert status(shop)["unfinished"] is None and status(shop)["lock"] is None

    git(shop.root, "checkout", "-q", "main")
    git(shop.root, "merge", "-q", "feature/login")
    build(shop)
    refused = shop.run("deploy", "staging", check=False)
    assert (
        "not on a branch" not in refused.stderr and "outside the deploy windows" in refused.stderr
    )
    shop.run("deploy", "staging", "--override-window")
    record = last(shop, "staging")
    assert record["status"] == "succeeded"
    assert "(deployed with --override-window)" in record["reason"]


def test_a_deploy_waits_for_an_approval_that_its_deployer_cannot_give(
    shop: Project, http: Receiver
) -> None:
    set_env(
        shop,
        "staging",
        approvals={"required": 1, "approvers": ["@release"], "expires": "10m"},
        groups={"release": [APPROVER, "tester@example.com"]},  # the deployer is one too
    )
    shop.configure_top(
        notify=[{"github": {"repository": "acme/shop", "token": "t0k", "api_url": http.base}}]
    )
    v1 = build(shop)["api"]
    deploying = shop.start("deploy", "staging")
    try:
        deployment = wait_awaiting(shop)
        self_approval = shop.run("approve", deployment, check=False)
        assert self_approval.returncode == 1
        assert "may not approve it (prevent_self_approval)" in self_approval.stderr
        outsider = shop.run("approve", deployment, check=False, env={"CONVEYOR_USER": "eve@x"})
        assert outsider.returncode == 1 and "is not an approver" in outsider.stderr
        ok = shop.run("approve", deployment, "-m", "looks good", env={"CONVEYOR_USER": APPROVER})
        assert "approved (approver@example.com); the waiting deploy goes on" in ok.stdout
        _, err = deploying.communicate(timeout=120)
    finally:
        deploying.kill()
    assert deploying.returncode == 0, err
    assert get_json(env_url(shop, "staging"))["release"] == v1
    # GitHub saw it queued while it waited, in progress once approved, then a success.
    assert [r.json().get("state") for r in http.received] == [
        None,
        "queued",
        "queued",
        "in_progress",
        "success",
    ]

    # A rejection ends the next one with nothing changed; so does an interrupted wait.
    change_api(shop, "v2")
    build(shop)
    deploying = shop.start("deploy", "staging")
    try:
        deployment = wait_awaiting(shop)
        shop.run("reject", deployment, "-m", "not today", env={"CONVEYOR_USER": APPROVER})
        _, err = deploying.communicate(timeout=60)
    finally:
        deploying.kill()
    assert deploying.returncode == 1 and "rejected by approver@example.com: not today" in err
    assert last(shop, "staging")["status"] == "rejected"
    assert get_json(env_url(shop, "staging"))["release"] == v1

    killed = subprocess.Popen(
        [*CONVEYOR, "deploy", "staging"],
        cwd=shop.root,
        env=shop.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deployment = wait_awaiting(shop)
    killed.kill()
    killed.wait()
    shop.run("approve", deployment, env={"CONVEYOR_USER": APPROVER})
    resumed = shop.run("resume", "staging")
    assert resumed.returncode == 0
    assert last(shop, "staging")["status"] == "succeeded"
    assert get_json(env_url(shop, "staging"))["release"] != v1


def wait_awaiting(shop: Project) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        unfinished = status(shop).get("unfinished")
        if unfinished and unfinished["status"] == "awaiting_approval":
            return str(unfinished["id"])
        time.sleep(0.2)
    raise AssertionError("the deployment never waited for approval")
