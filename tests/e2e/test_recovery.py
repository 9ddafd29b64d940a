"""Kill the executor at every step boundary, then resume or abort: nothing is lost."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.test_shop import assert_serving, build, change_api, status, url
from tests.support.load import traffic
from tests.support.project import Project

pytestmark = pytest.mark.slow


def supervised_programs(shop: Project) -> set[str]:
    from conveyor.paths import Paths
    from conveyor.targets.supervisor import Supervisor

    return {p.status.name for p in Supervisor(Paths(shop.home)).all_programs(owner="instance")}


def recorded_instances(env: dict[str, Any]) -> set[str]:
    """The instances a status (`status(shop)`) lists."""
    return {i["name"] for s in env["services"] for i in s["instances"]}


def test_killed_at_every_step_boundary_then_resume_or_abort(shop: Project) -> None:
    releases = [build(shop)["api"]]
    shop.run("deploy", "staging")
    change_api(shop, "v2")
    releases.append(build(shop)["api"])
    plan = shop.json("deploy", "staging", "--dry-run")
    assert isinstance(plan, dict)
    count = len(plan["steps"])
    assert count >= 8

    current = releases[0]
    with traffic(url(shop), clients=3) as load:
        for step in range(1, count + 1):
            point = "before_step" if step % 3 == 0 else "after_step"
            target = releases[1] if current == releases[0] else releases[0]
            killed = shop.run(
                "deploy",
                "staging",
                "-r",
                f"api={target}",
                check=False,
                env={"CONVEYOR_FAILPOINTS": f"executor.{point}:{step}=crash"},
            )
            assert killed.returncode == -9, killed.stderr

            if step in (1, 3):  # the first kill after a step, and the first before one
                refused = shop.run("deploy", "staging", check=False)
                assert refused.returncode == 1
                assert "interrupted" in refused.stderr
                assert "conveyor resume staging" in refused.stderr
                assert status(shop)["unfinished"] is not None
            # (resume and abort refuse when nothing is unfinished: they check it every time)

            if step % 2:
                shop.run("resume", "staging")
                current = target
            else:
                shop.run("abort", "staging")
            serving = assert_serving(shop, current)
            assert supervised_programs(shop) == recorded_instances(serving)
        result = load.stop()
    assert result.failures == 0, result
    history = shop.json("history", "staging", "-n", "100")
    assert isinstance(history, list)
    statuses = {d["status"] for d in history}
    assert statuses <= {"succeeded", "aborted"}


def test_killed_while_rolling_back_then_resumed(shop: Project) -> None:
    good = build(shop)["api"]
    shop.run("deploy", "staging")
    shop.write_faults(health="fail")
    change_api(shop, "bad")
    bad = build(shop)["api"]
    plan = shop.json("deploy", "staging", "--dry-run")
    assert isinstance(plan, dict)
    # The forward plan fails at its first wait_healthy; the restoration steps
    # are appended after it, so the first of them is step len(plan) + 1.
    first_revert = len(plan["steps"]) + 1
    with traffic(url(shop), clients=2) as load:
        killed = shop.run(
            "deploy",
            "staging",
            check=False,
            env={
                "SHOP_DEPLOY_TIMEOUT": "2s",
                "CONVEYOR_FAILPOINTS": f"executor.after_step:{first_revert}=crash",
            },
        )
        assert killed.returncode == -9, killed.stderr
        assert status(shop)["unfinished"]["status"] == "rolling_back"
        resumed = shop.run("resume", "staging", "--json")
        result = load.stop()
    record = json.loads(resumed.stdout)
    assert record["status"] == "rolled_back"
    assert record["releases"]["api"] == bad
    assert "not healthy" in record["error"]
    serving = assert_serving(shop, good)
    assert supervised_programs(shop) == recorded_instances(serving)
    assert result.failures == 0, result.summary()
