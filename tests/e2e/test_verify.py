"""End to end: the check after traffic (`verify:`) on one host, real Caddy and supervisord.

A release that passes its health checks but whose public endpoint starts failing after a
few requests (the shop's `fail_after_requests` fault) fails its bake: blue-green flips
the traffic back to the warm previous instances in one weight change, rolling starts the
previous release again; either way the deployment says why and a webhook hears about it.
A good release passes its bake (smoke tests and an analysis of real traffic); a CLI
killed (SIGKILL) in the middle of a bake leaves a deployment that `resume` finishes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from tests.e2e.test_shop import build, change_api, get_json, service, status, url
from tests.support.load import traffic
from tests.support.project import Project
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow

SMOKE = [{"name": "version", "path": "/api/version"}]


def configure(
    shop: Project,
    verify: dict[str, Any],
    strategy: object = "rolling",
    analysis: dict[str, Any] | None = None,
    notify: list[dict[str, Any]] | None = None,
    environment: str = "staging",
) -> None:
    """Give `environment` `strategy` and `verify`; add analyses and notify targets."""
    path = shop.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    settings = config["environments"][environment]
    settings["strategy"] = strategy
    settings["verify"] = verify
    if analysis:
        config["analysis"] = {**config.get("analysis", {}), **analysis}
    if notify is not None:
        config["notify"] = notify
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    shop.commit(f"{environment}: verify {verify}")


def last(shop: Project) -> dict[str, Any]:
    history = shop.json("history", "staging", "-n", "1")
    assert isinstance(history, list)
    return dict(history[0])


def explain(shop: Project, deployment: str) -> dict[str, Any]:
    explained = shop.json("explain", deployment)
    assert isinstance(explained, dict)
    return explained


def after_verify(explained: dict[str, Any]) -> list[str]:
    """The descriptions of the steps after the verify step (the way back)."""
    steps = explained["steps"]
    at = next(i for i, s in enumerate(steps) if s["kind"] == "verify")
    return [s["description"] for s in steps[at + 1 :]]


def api_instances(shop: Project) -> dict[str, tuple[str, str]]:
    """name -> (release, state) of the api instances."""
    return {
        i["name"]: (i["release"], i["state"]) for i in service(status(shop), "api")["instances"]
    }


def bad_release(shop: Project) -> str:
    """A new api release whose endpoints answer 500 after 3 requests per instance (its
    health checks stay fine)."""
    shop.write_faults(fail_after_requests=3)
    change_api(shop, f"bad {time.time()}")
    return build(shop)["api"]


def test_failing_bake_flips_back_to_the_warm_release_and_notifies(
    shop: Project, http: Receiver
) -> None:
    configure(
        shop,
        {"bake": "4s", "interval": "200ms", "smoke": SMOKE},
        {"type": "blue_green", "rollback_window": "5m"},
        notify=[{"webhook": {"url": f"{http.base}/deploys"}}],
    )
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    warm_before = {n for n, (release, state) in api_instances(shop).items() if release == v1}
    v2 = bad_release(shop)

    failed = shop.run("deploy", "staging", check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "verify failed" in failed.stderr and "smoke test version" in failed.stderr
    record = last(shop)
    assert record["status"] == "rolled_back"
    assert record["releases"]["api"] == v2
    reason = record["error"]
    assert reason.startswith("verify failed "), reason
    assert "smoke test version: GET http" in reason and "/api/version -> 500" in reason, reason

    # One flip back to the instances that served before, still warm: nothing started.
    assert get_json(url(shop))["release"] == v1
    instances = api_instances(shop)
    assert set(instances) == warm_before
    assert set(instances.values()) == {(v1, "serving")}
    back = after_verify(explain(shop, record["id"]))
    assert not [d for d in back if d.startswith("start ")], back
    assert len([d for d in back if d.startswith("route api traffic")]) == 1, back

    # The webhook heard why, before it heard that the previous release is back.
    events = [(r.json()["event"], r.json()) for r in http.wait_for(5) if r.path == "/deploys"]
    kinds = [kind for kind, body in events if body["deployment"] == record["id"]]
    assert kinds == ["started", "verify_failed", "rolled_back"], kinds
    body = dict(events)["verify_failed"]
    assert body["status"] == "rolling_back" and body["error"] == reason


def test_failing_bake_without_warm_instances_deploys_the_previous_release_again(
    shop: Project,
) -> None:
    configure(shop, {"bake": "4s", "interval": "200ms", "smoke": SMOKE})  # rolling
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    before = set(api_instances(shop))
    bad_release(shop)

    failed = shop.run("deploy", "staging", check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    record = last(shop)
    assert record["status"] == "rolled_back" and "smoke test version" in record["error"]
    # The previous release was started again on new instances, and serves.
    instances = api_instances(shop)
    assert set(instances.values()) == {(v1, "serving")}
    assert before.isdisjoint(instances)
    back = after_verify(explain(shop, record["id"]))
    assert any(d.startswith("start ") and f"(api {v1})" in d for d in back), back
    assert get_json(url(shop))["release"] == v1


def test_good_release_passes_its_bake_and_a_killed_bake_is_resumed(shop: Project) -> None:
    configure(
        shop,
        {"bake": "5s", "interval": "500ms", "smoke": SMOKE, "analysis": "after"},
        {"type": "canary", "steps": [{"set_weight": 50}], "rollback_window": "5m"},
        analysis={
            "after": {
                "interval": "500ms",
                "duration": "1s",
                "min_requests": 20,
                "thresholds": ["error_rate < 1%", "p95 < 500ms"],
                "on_inconclusive": "fail",
            }
        },
    )
    v1 = build(shop)["api"]
    # Killed (SIGKILL) after the second round of the bake's smoke tests.
    with traffic(url(shop), clients=2):
        killed = shop.run(
            "deploy",
            "staging",
            check=False,
            env={"CONVEYOR_FAILPOINTS": "verify.after_round:2=crash"},
        )
        assert killed.returncode == -9, killed.stdout + killed.stderr
        assert "[api] verify: 0" in killed.stderr, killed.stderr  # the bake had started
        interrupted = last(shop)
        assert interrupted["status"] == "running"
        clock = time.monotonic()
        resumed = shop.run("resume", "staging")
        took = time.monotonic() - clock
    assert "the bake goes on after an interruption: " in resumed.stderr, resumed.stderr
    assert last(shop)["id"] == interrupted["id"] and last(shop)["status"] == "succeeded"
    assert took < 30  # the whole bake is 5 s; what was left of it, some 4 s, ran again
    assert get_json(url(shop))["release"] == v1

    change_api(shop, "v2")
    v2 = build(shop)["api"]
    with traffic(url(shop), clients=2) as load:
        clock = time.monotonic()
        deployed = shop.run("deploy", "staging")
        took = time.monotonic() - clock
        result = load.stop()
    assert result.failures == 0, result.summary()
    assert took >= 5  # it waited for the whole bake
    assert "baked, " in deployed.stderr and "smoke passed: GET http" in deployed.stderr
    record = last(shop)
    assert record["status"] == "succeeded"
    assert get_json(url(shop))["release"] == v2
    explained = explain(shop, record["id"])
    [verify] = [s for s in explained["steps"] if s["kind"] == "verify"]
    assert verify["status"] == "done" and verify["note"].startswith("baked 5s: ")
    assert "analysis after: PASS" in verify["note"], verify["note"]
    [run] = [a for a in explained["analyses"] if a["step"] == verify["index"]]
    assert run["analysis"] == "after" and run["verdict"]["decision"] == "PASS"
    assert run["spec"]["comparative"] is None
