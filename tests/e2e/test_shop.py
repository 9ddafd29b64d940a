"""End to end: the CLI deploys examples/shop with real supervisord and Caddy."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import pytest

from tests.support.load import traffic
from tests.support.project import Project

pytestmark = pytest.mark.slow


def url(shop: Project, path: str = "/api/version") -> str:
    return f"http://{shop.env['SHOP_STAGING_LISTEN']}{path}"


def get_json(address: str) -> Any:
    with urllib.request.urlopen(address, timeout=10) as response:
        return json.loads(response.read())


def build(shop: Project) -> dict[str, str]:
    built = shop.json("build")
    assert isinstance(built, list)
    return {r["service"]: r["id"] for r in built}


def change_api(shop: Project, marker: str) -> None:
    (shop.root / "api" / "CHANGES").write_text(marker + "\n")
    shop.commit(marker)


def status(shop: Project) -> dict[str, Any]:
    report = shop.json("status", "staging")
    assert isinstance(report, dict)
    env = report["environments"][0]
    assert isinstance(env, dict)
    return env


def service(env: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in env["services"] if s["name"] == name)


def assert_serving(shop: Project, api_release: str, replicas: int = 2) -> dict[str, Any]:
    """Check that the api serves `api_release` on every instance; the status read."""
    env = status(shop)
    api = service(env, "api")
    assert api["release"] == api_release
    assert len(api["instances"]) == replicas, api["instances"]
    for inst in api["instances"]:
        assert inst["release"] == api_release
        assert inst["state"] == "serving"
        assert inst["process"] in ("running", "starting")  # supervisord: running < 1 s
    assert get_json(url(shop))["release"] == api_release
    return env


def test_deploy_upgrade_and_rollback_without_dropping_a_request(shop: Project) -> None:
    v1 = build(shop)
    assert shop.run("deploy", "staging").returncode == 0
    assert_serving(shop, v1["api"])
    assert get_json(url(shop, "/version"))["release"] == v1["web"]

    change_api(shop, "v2")
    v2 = build(shop)
    assert v2["web"] == v1["web"], "unchanged source reuses the release"
    assert v2["api"] != v1["api"]

    with traffic(url(shop), clients=4, count_bodies=True) as load:
        shop.run("deploy", "staging", "-m", "ship v2")
        result = load.stop()
    assert result.failures == 0, result
    assert result.requests > 50
    seen = {json.loads(body)["release"] for body in result.bodies}
    assert v2["api"] in seen
    assert_serving(shop, v2["api"])

    with traffic(url(shop), clients=4) as load:
        shop.run("rollback", "staging")
        result = load.stop()
    assert result.failures == 0, result
    assert_serving(shop, v1["api"])

    shop.run("rollback", "staging", "--to", v2["api"])
    assert_serving(shop, v2["api"])

    history = shop.json("history", "staging")
    assert isinstance(history, list)
    assert [d["kind"] for d in history] == ["rollback", "rollback", "deploy", "deploy"]
    assert [d["status"] for d in history] == ["succeeded"] * 4
    history = history[1:]
    assert history[1]["reason"] == "ship v2"
    assert history[1]["releases"]["api"] == v2["api"]
    assert history[0]["user"] == "tester@example.com"
    assert history[0]["started_at"] <= history[0]["finished_at"]


def test_release_failing_health_check_is_rolled_back(shop: Project) -> None:
    shop.run("deploy", "staging", "--build")
    v1 = shop.json("history", "staging")[0]["releases"]  # type: ignore[index]
    shop.write_faults(health="fail")
    change_api(shop, "bad")

    with traffic(url(shop), clients=2) as load:
        failed = shop.run(
            "deploy", "staging", "--build", check=False, env={"SHOP_DEPLOY_TIMEOUT": "3s"}
        )
        result = load.stop()
    newest_first = shop.json("releases")
    assert isinstance(newest_first, list)
    bad = {r["service"]: r["id"] for r in reversed(newest_first)}
    assert failed.returncode == 1
    assert "not healthy" in failed.stderr
    assert "log lines" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert result.failures == 0, result
    assert_serving(shop, v1["api"])
    last = shop.json("history", "staging")[0]  # type: ignore[index]
    assert last["status"] == "rolled_back"
    assert last["releases"]["api"] == bad["api"]
    assert "not healthy" in last["error"]


def test_failing_smoke_test_stops_the_release_before_it_gets_a_request(shop: Project) -> None:
    shop.configure_service("api", smoke=[{"name": "counter answers", "path": "/api/counter"}])
    v1 = build(shop)["api"]
    first = shop.run("deploy", "staging")  # the smoke test passes on v1
    assert "smoke test counter answers: passed" in first.stdout + first.stderr
    shop.write_faults(error_rate=1.0)  # healthy, but every other request fails
    change_api(shop, "bad")
    bad = build(shop)["api"]

    with traffic(url(shop), count_bodies=True) as load:
        failed = shop.run("deploy", "staging", check=False)
        result = load.stop()
    assert failed.returncode == 1
    assert "smoke test counter answers" in failed.stderr and "500" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert result.failures == 0, result.summary()
    assert {json.loads(body)["release"] for body in result.bodies} == {v1}
    assert_serving(shop, v1)
    last = shop.json("history", "staging")[0]  # type: ignore[index]
    assert last["status"] == "rolled_back" and last["releases"]["api"] == bad
    assert "smoke test counter answers" in last["error"]


def test_slow_request_in_flight_survives_the_switch(shop: Project) -> None:
    build(shop)
    shop.run("deploy", "staging")
    change_api(shop, "v2")
    build(shop)
    outcome: dict[str, Any] = {}

    def slow() -> None:
        try:
            with urllib.request.urlopen(url(shop, "/api/slow?ms=3000"), timeout=30) as response:
                outcome["status"] = response.status
        except OSError as error:  # pragma: no cover - the failure we test against
            outcome["error"] = repr(error)

    thread = threading.Thread(target=slow)
    thread.start()
    shop.run("deploy", "staging")
    thread.join(30)
    assert outcome == {"status": 200}


def test_dry_run_prints_the_plan_and_changes_nothing(shop: Project) -> None:
    build(shop)
    plan = shop.run("deploy", "staging", "--dry-run")
    assert "start" in plan.stdout and "wait until" in plan.stdout
    as_json = shop.json("deploy", "staging", "--dry-run")
    assert isinstance(as_json, dict) and as_json["dry_run"] is True
    kinds = [s["kind"] for s in as_json["steps"]]
    # each release's digest is checked before anything starts from it
    assert kinds[:4] == ["verify_release", "verify_release", "start", "wait_healthy"]
    assert shop.json("history", "staging") == []
    assert not (shop.home / "run" / "supervisor.sock").exists()
