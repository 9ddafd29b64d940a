"""End to end: canary and blue-green rollouts on real routers with live analysis."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e.test_shop import build, change_api, get_json, service, status, url
from tests.support.load import traffic
from tests.support.project import Project

pytestmark = pytest.mark.slow

QUICK = {
    "interval": "500ms",
    "duration": "20s",
    "max_duration": "40s",
    "min_requests": 50,
    "thresholds": ["error_rate < 2%", "p95 < 200ms"],
}


def releases_seen(result: Any) -> Counter[str]:
    seen: Counter[str] = Counter()
    for body, count in result.bodies.items():
        if body:
            seen[json.loads(body)["release"]] += count
    return seen


def deployment(shop: Project, deployment_id: str) -> dict[str, Any]:
    history = shop.json("history", "staging", "-n", "20")
    assert isinstance(history, list)
    return next(d for d in history if d["id"] == deployment_id)


def last_deployment(shop: Project) -> dict[str, Any]:
    history = shop.json("history", "staging", "-n", "1")
    assert isinstance(history, list)
    return dict(history[0])


def deploy_paused(shop: Project, *args: str, command: str = "deploy", why: str = "") -> Any:
    """`conveyor deploy ARGS --json` of a rollout that pauses: exit 3 (waiting for a person),
    why on stderr and the commands to run next."""
    result = shop.run(command, *args, "--json", check=False)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    waiting = [line for line in lines if line.startswith("waiting: ")]
    assert len(waiting) == 1 and why in waiting[0], result.stderr
    env = args[0]
    for step in ("promote", "resume", "abort"):
        assert any(line.startswith(f"next: conveyor {step} {env}") for line in lines), lines
    return json.loads(result.stdout)


def api_states(shop: Project) -> dict[str, tuple[str, str]]:
    """name -> (release, state) of the api instances."""
    api = service(status(shop), "api")
    return {i["name"]: (i["release"], i["state"]) for i in api["instances"]}


@pytest.mark.parametrize("router", ["caddy", "haproxy"])
def test_canary_weights_hold_on_real_traffic_then_promote_and_flip_back(
    shop: Project, router: str
) -> None:
    shop.env["SHOP_STAGING_ROUTER"] = router
    shop.configure("staging", {"type": "canary", "steps": [{"set_weight": 25}, {"pause": {}}]})
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    change_api(shop, "v2")
    v2 = build(shop)["api"]

    paused = deploy_paused(shop, "staging", why="waiting for conveyor promote")
    assert paused["status"] == "paused"
    with traffic(url(shop), clients=4, count_bodies=True) as load:
        time.sleep(4)
        result = load.stop()
    seen = releases_seen(result)
    share = 100 * seen[v2] / sum(seen.values())
    assert sum(seen.values()) > 300, result.summary()
    assert abs(share - 25) <= 3, (share, seen)
    assert result.failures == 0, result.summary()

    with traffic(url(shop), clients=4, count_bodies=True) as load:
        promoted = shop.json("promote", "staging")
        assert isinstance(promoted, dict) and promoted["status"] == "succeeded"
        flipped = shop.json("rollback", "staging")
        result = load.stop()
    assert result.failures == 0, result.summary()
    assert isinstance(flipped, dict) and flipped["status"] == "succeeded"
    # Inside the rollback window the v1 instances were still warm: no instance
    # started, the v2 ones are now warm in turn.
    states = api_states(shop)
    assert sorted(states.values()) == sorted(
        [(v1, "serving"), (v1, "serving"), (v2, "warm"), (v2, "warm")]
    )
    assert get_json(url(shop))["release"] == v1


@pytest.mark.parametrize(
    ("faults", "router"),
    [({"error_rate": 0.05}, "caddy"), ({"latency_ms": 300}, "haproxy")],
    ids=["errors-caddy", "latency-haproxy"],
)
def test_bad_canary_is_aborted_by_its_analysis(
    shop: Project, faults: dict[str, Any], router: str
) -> None:
    shop.env["SHOP_STAGING_ROUTER"] = router
    shop.configure(
        "staging",
        {
            "type": "canary",
            "baseline": True,
            "analysis": "background",
            # Only the analysis can end this pause within the run's timeout (an abort).
            "steps": [{"set_weight": 20}, {"pause": "10m"}],
        },
        {"background": {"interval": "500ms", "duration": "5m", "min_requests": 50}},
    )
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    shop.write_faults(**faults)
    change_api(shop, "bad")
    build(shop)

    with traffic(url(shop), clients=4, count_bodies=True) as load:
        aborted = shop.run("deploy", "staging", check=False, timeout=300)
        result = load.stop()
    assert aborted.returncode == 1, aborted.stdout + aborted.stderr
    assert "was aborted" in aborted.stderr and "background analysis" in aborted.stderr
    record = last_deployment(shop)
    assert record["status"] == "aborted"
    assert get_json(url(shop))["release"] == v1
    assert {release for release, _ in api_states(shop).values()} == {v1}
    # Only the canary's own errors reached clients, and only while it ran.
    bad_share = result.failures / max(1, result.requests)
    assert bad_share < 0.02, result.summary()

    explained = shop.run("explain", record["id"]).stdout
    assert "FAIL" in explained and "conclusion: aborted: analysis background" in explained


def test_good_canary_is_promoted_and_its_analysis_can_be_replayed(shop: Project) -> None:
    shop.configure(
        "staging",
        {
            "type": "canary",
            "steps": [{"set_weight": 50}, {"analysis": "quick"}],
            # Long enough that `status` still sees the warm instances on a loaded machine
            # (a CLI start takes seconds there; 20 s was not always), short enough to
            # watch it end.
            "rollback_window": "45s",
        },
        {"quick": {**QUICK, "duration": "4s"}},
    )
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    change_api(shop, "v2")
    v2 = build(shop)["api"]
    with traffic(url(shop), clients=4) as load:
        shop.run("deploy", "staging")
        result = load.stop()
    # Read first, while the rollback window still runs on a loaded machine.
    assert sorted(api_states(shop).values()) == sorted(
        [(v2, "serving"), (v2, "serving"), (v1, "warm"), (v1, "warm")]
    )
    assert result.failures == 0, result.summary()
    record = last_deployment(shop)
    assert record["status"] == "succeeded"
    assert get_json(url(shop))["release"] == v2
    # When the rollback window ends, supervisord's timer stops the warm ones.
    _wait_for(lambda: len(api_states(shop)) == 2, 90)
    from tests.e2e.test_recovery import recorded_instances, supervised_programs

    assert supervised_programs(shop) == recorded_instances(status(shop))

    explained = shop.json("explain", record["id"])
    assert isinstance(explained, dict)
    (run,) = explained["analyses"]
    assert run["verdict"]["decision"] == "PASS"
    assert explained["conclusion"].startswith("promoted, after analyses passed: quick")
    strict = shop.json("analyze", record["id"], "--replay", "--set", "p50<0.01ms")
    assert isinstance(strict, list)
    assert strict[0]["recorded"]["decision"] == "PASS"
    assert strict[0]["replayed"]["decision"] == "FAIL"
    text = shop.run("analyze", record["id"], "--replay", "--set", "p50<0.01ms").stdout
    assert "a different decision" in text


def test_no_traffic_is_inconclusive_and_pauses_for_a_human(shop: Project) -> None:
    shop.configure(
        "staging",
        {"type": "canary", "steps": [{"set_weight": 50}, {"analysis": "quick"}]},
        {"quick": {**QUICK, "duration": "1s", "max_duration": "2s"}},
    )
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    change_api(shop, "v2")
    build(shop)
    paused = deploy_paused(shop, "staging", why="analysis quick was inconclusive")
    assert paused["status"] == "paused"
    unfinished = status(shop)["unfinished"]
    assert "inconclusive" in unfinished["summary"] and "conveyor promote" in unfinished["summary"]
    refused = shop.run("deploy", "staging", check=False)
    assert refused.returncode == 1 and "paused" in refused.stderr
    again = deploy_paused(shop, "staging", command="resume", why="was inconclusive")
    assert again["status"] == "paused"  # still no traffic: a CI job sees it wait again

    aborted = shop.json("abort", "staging")
    assert isinstance(aborted, dict) and aborted["status"] == "aborted"
    assert get_json(url(shop))["release"] == v1
    assert {release for release, _ in api_states(shop).values()} == {v1}
    assert status(shop)["unfinished"] is None


def test_blue_green_previews_then_switches_and_aborts_without_a_failed_request(
    shop: Project,
) -> None:
    preview = f"127.0.0.1:{_free_port()}"
    shop.configure("staging", {"type": "blue_green", "preview": preview, "auto_promote": False})
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    change_api(shop, "v2")
    v2 = build(shop)["api"]

    with traffic(url(shop), clients=4) as load:
        paused = deploy_paused(shop, "staging")
        assert paused["status"] == "paused"
        assert get_json(f"http://{preview}/api/version")["release"] == v2
        assert get_json(url(shop))["release"] == v1
        promoted = shop.json("promote", "staging")
        assert isinstance(promoted, dict) and promoted["status"] == "succeeded"
        assert get_json(url(shop))["release"] == v2

        change_api(shop, "v3")
        build(shop)
        paused = deploy_paused(shop, "staging")
        assert paused["status"] == "paused"
        aborted = shop.json("abort", "staging")
        assert isinstance(aborted, dict) and aborted["status"] == "aborted"
        result = load.stop()
    assert result.failures == 0, result.summary()
    assert get_json(url(shop))["release"] == v2
    # The v3 deploy ended v1's rollback window; its abort stopped v3 and
    # closed the preview listener.
    assert sorted(api_states(shop).values()) == [(v2, "serving"), (v2, "serving")]
    host, port = preview.split(":")
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port))):
        pass


def test_abort_from_another_terminal_flips_traffic_back_without_waiting_out_the_pause(
    shop: Project,
) -> None:
    shop.configure("staging", {"type": "canary", "steps": [{"set_weight": 50}, {"pause": "2m"}]})
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    change_api(shop, "v2")
    build(shop)
    deploying = shop.start("deploy", "staging")
    try:
        _wait_for(lambda: "(pause 120s" in status(shop)["unfinished"]["summary"], 60)
        with traffic(url(shop), clients=4) as load:
            pause = shop.json("pause", "staging")
            assert isinstance(pause, dict) and pause["status"] == "paused"
            deploying.wait(30)
            resumed = shop.start("resume", "staging")
            _wait_for(lambda: status(shop)["unfinished"]["in_progress"], 30)
            time.sleep(1)
            started = time.monotonic()
            aborted = shop.json("abort", "staging")
            took = time.monotonic() - started
            result = load.stop()
        out, err = resumed.communicate(timeout=30)
    finally:
        deploying.kill()
    assert isinstance(aborted, dict) and aborted["status"] == "aborted", aborted
    assert resumed.returncode == 0, out + err
    assert get_json(url(shop))["release"] == v1
    assert result.failures == 0, result.summary()
    # The running deploy takes the request at its next poll: the abort does not wait out
    # the 2-minute pause. (How fast it is, under no load, is a benchmark's to say.)
    assert took < 60, took


def _wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (AssertionError, KeyError, TypeError):
            pass
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _free_port() -> int:
    from tests.support.project import free_port

    return free_port()


KILLED_STRATEGIES = {
    "canary": (
        {
            "type": "canary",
            "baseline": True,
            "steps": [{"set_weight": 30}, {"pause": "1s"}],
            "rollback_window": "0s",
        },
        {"start", "wait_healthy", "set_weights", "pause", "drain", "stop"},
    ),
    "blue_green": (
        {"type": "blue_green", "preview": "PREVIEW", "rollback_window": "0s"},
        {"start", "wait_healthy", "preview", "set_weights", "mark_current", "drain", "stop"},
    ),
}


@pytest.mark.parametrize("strategy", sorted(KILLED_STRATEGIES))
def test_killed_at_each_kind_of_step_then_resumed_or_aborted(shop: Project, strategy: str) -> None:
    from tests.e2e.test_recovery import recorded_instances, supervised_programs
    from tests.e2e.test_shop import assert_serving

    settings, kinds = KILLED_STRATEGIES[strategy]
    if settings.get("preview") == "PREVIEW":
        settings = {**settings, "preview": f"127.0.0.1:{_free_port()}"}
    shop.configure("staging", settings)
    releases = [build(shop)["api"]]
    shop.run("deploy", "staging")
    change_api(shop, "v2")
    releases.append(build(shop)["api"])
    plan = shop.json("deploy", "staging", "--dry-run")
    assert isinstance(plan, dict)
    # One kill at the first step of each kind (the plan's shape does not change
    # with the direction, v1 -> v2 or back).
    firsts: dict[str, int] = {}
    for step in plan["steps"]:
        if step["service"] == "api":
            firsts.setdefault(step["kind"], step["index"])
    assert kinds <= set(firsts)

    current = releases[0]
    with traffic(url(shop), clients=3) as load:
        for n, index in enumerate(sorted(firsts.values())):
            target = releases[1] if current == releases[0] else releases[0]
            killed = shop.run(
                "deploy",
                "staging",
                "-r",
                f"api={target}",
                check=False,
                env={"CONVEYOR_FAILPOINTS": f"executor.after_step:{index}=crash"},
            )
            assert killed.returncode == -9, killed.stdout + killed.stderr
            # resume and abort refuse (exit 2) unless the deployment is unfinished
            if n % 2 == 0:
                shop.run("resume", "staging")
                current = target
            else:
                shop.run("abort", "staging")
            serving = assert_serving(shop, current)
            assert supervised_programs(shop) == recorded_instances(serving)
        result = load.stop()
    assert result.failures == 0, result.summary()
