"""The check after traffic (`verify:`) on the in-memory fakes: where plans put it, a bake that
passes, one that fails and rolls back, an analysis without traffic, a bake cut short.

The smoke tests here are commands (real processes; the fakes serve no HTTP). The e2e
tests (tests/e2e/test_verify.py) run the same against real Caddy and supervisord.
"""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor.engine import deployments
from conveyor.engine.bake import BAKE_EVENT, bake_started
from conveyor.engine.failpoints import FailpointError
from conveyor.engine.plan import Plan, SetWeights, Verify, VerifyRelease, steps_from_json
from conveyor.engine.runtime import Runtime
from conveyor.engine.strategies.verify import plan_verify
from conveyor.errors import DeployError
from conveyor.store.records import PAUSED, ROLLED_BACK, RUNNING, SUCCEEDED
from tests.engine.test_executor_fakes import ENV, open_runtime, run_async, serving_releases

# The smoke test fails for release r2 only: the command sees the deployment's releases.
SMOKE = """test "$CONVEYOR_RELEASE_API" != r2"""


def config(verify: str, strategy: str = "{type: rolling, max_surge: 1, max_unavailable: 0}") -> str:
    return (
        textwrap.dedent(
            """
        project: demo
        services:
          api:
            run: "serve"
            run_as: root
            replicas: 2
            health: {type: tcp, interval: 100ms}
            deploy_timeout: 10s
        analysis:
          errors:
            interval: 100ms
            duration: 1s
            min_requests: 10
            thresholds: ["error_rate < 1%"]
            on_inconclusive: ON_INCONCLUSIVE
        environments:
          staging:
            listen: "127.0.0.1:18080"
            strategy: STRATEGY
            verify: VERIFY
        """
        )
        .replace("STRATEGY", strategy)
        .replace("VERIFY", verify)
    )


def runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verify: str, inconclusive: str = "pause"
) -> Runtime:
    text = config(verify).replace("ON_INCONCLUSIVE", inconclusive)
    return open_runtime(tmp_path, monkeypatch, text)


async def deploy(
    rt: Runtime, release: str, progress: list[str] | None = None
) -> deployments.DeploymentRecord:
    proposal = await deployments.propose(rt, ENV, {"api": release}, migrate=True)
    steps = tuple(s for s in proposal.plan.steps if not isinstance(s, VerifyRelease))
    proposal = dataclasses.replace(proposal, plan=Plan(ENV, steps))
    say = progress.append if progress is not None else (lambda _: None)
    return await deployments.deploy(rt, proposal, progress=say)


def verify_journal(rt: Runtime, deployment_id: str) -> tuple[int, str, str | None]:
    """(index, status, note) of the deployment's verify step in the journal."""
    [step] = [s for s in rt.store.list_steps(deployment_id) if s.kind == "verify"]
    return step.index, step.status, step.error


def latest(rt: Runtime) -> deployments.DeploymentRecord:
    [record] = rt.store.list_deployments(ENV, limit=1)
    return record


# -- planning -------------------------------------------------------------------------


def test_a_deploy_plan_ends_with_the_bake_and_it_survives_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verify = "{bake: 2m, interval: 10s, smoke: [{path: /health}], analysis: errors}"
    rt = runtime(tmp_path, monkeypatch, verify)
    try:

        async def plans() -> tuple[Plan, Plan]:
            deploy_plan = (await deployments.propose(rt, ENV, {"api": "r1"}, migrate=True)).plan
            back = (await deployments.propose(rt, ENV, {"api": "r1"})).plan  # a rollback's
            return deploy_plan, back

        deploy_plan, rollback_plan = asyncio.run(plans())
    finally:
        rt.close()
    *before, last = deploy_plan.steps
    assert isinstance(last, Verify)
    assert any(isinstance(s, SetWeights) for s in before)  # after every traffic change
    assert last.describe() == (
        "verify for 2m after traffic: 1 smoke test of http://127.0.0.1:18080 every 10s, "
        "analysis errors"
    )
    # Thresholds only: after the promotion there is nothing left to compare with.
    assert last.spec["comparative"] is None and last.spec["thresholds"] == ["error_rate < 1%"]
    assert steps_from_json([last.to_dict()]) == [last]
    # A rollback is the way out of trouble: it bakes nothing.
    assert not any(isinstance(s, Verify) for s in rollback_plan.steps)


def test_no_verify_no_step() -> None:
    assert plan_verify(None, "http://127.0.0.1:8080", "api", {}) == []


# -- the bake -------------------------------------------------------------------------


@run_async
async def test_a_bake_that_passes_lets_the_deploy_succeed_with_its_readings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(
        tmp_path, monkeypatch, f"{{bake: 600ms, interval: 200ms, smoke: [{{command: '{SMOKE}'}}]}}"
    )
    progress: list[str] = []
    started = time.monotonic()
    record = await deploy(rt, "r1", progress)
    took = time.monotonic() - started
    assert record.status == SUCCEEDED
    _, status, note = verify_journal(rt, latest(rt).id)
    assert status == "done"
    assert note is not None and note.startswith("baked 0.6s: ")
    assert "rounds of smoke tests passed (last: test " in note and "-> exit 0 in" in note
    assert took >= 0.6  # the deploy waited for the whole bake
    assert any("verify: 0.6s of 0.6s baked, 0s left; smoke passed" in line for line in progress)
    rt.close()


@run_async
async def test_a_failing_check_without_warm_instances_redeploys_the_previous_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(
        tmp_path, monkeypatch, f"{{bake: 5s, interval: 200ms, smoke: [{{command: '{SMOKE}'}}]}}"
    )
    await deploy(rt, "r1")
    before = serving_releases(rt)
    with pytest.raises(DeployError) as failed:
        await deploy(rt, "r2")
    record = latest(rt)
    assert record.status == ROLLED_BACK
    assert record.error is not None
    assert record.error.startswith("verify failed 0s into the 5s bake: smoke test command ")
    assert "exit 1" in record.error
    assert record.error in failed.value.message
    # Rolling keeps no warm instances: r1 was started again, on new instances.
    after = serving_releases(rt)
    assert sorted(after.values()) == ["r1", "r1"] and set(after).isdisjoint(before)
    assert rt.store.current_releases(ENV) == {"api": "r1"}
    rt.close()


@pytest.mark.parametrize("inconclusive", ["pause", "fail"])
@run_async
async def test_an_analysis_without_enough_traffic_is_inconclusive_at_the_end_of_the_bake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inconclusive: str
) -> None:
    rt = runtime(
        tmp_path, monkeypatch, "{bake: 500ms, interval: 100ms, analysis: errors}", inconclusive
    )
    if inconclusive == "pause":
        await deploy(rt, "r1")
    else:
        with pytest.raises(DeployError):
            await deploy(rt, "r1")
    first = latest(rt)
    if inconclusive == "pause":
        assert first.status == PAUSED
        index, status, note = verify_journal(rt, first.id)
        assert status == "paused" and note is not None and "inconclusive" in note
        assert bake_started(rt.store, first.id, index) is None  # a resume bakes again in full
        promoted = await deployments.promote(rt, ENV)  # a person accepts the release
        assert promoted.status == SUCCEEDED
    else:
        assert first.status == ROLLED_BACK
        assert first.error is not None and "analysis errors: INCONCLUSIVE" in first.error
    rt.close()


@run_async
async def test_a_bake_cut_short_goes_on_for_what_was_left_of_it_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(
        tmp_path, monkeypatch, f"{{bake: 1m, interval: 100ms, smoke: [{{command: '{SMOKE}'}}]}}"
    )
    # Dies after the second round of smoke tests, as a kill -9 would leave it.
    monkeypatch.setenv("CONVEYOR_FAILPOINTS", "verify.after_round:2=error")
    with pytest.raises(FailpointError):
        await deploy(rt, "r1")
    interrupted = latest(rt)
    assert interrupted.status == RUNNING
    index, status, _ = verify_journal(rt, interrupted.id)
    assert status == "running"
    started = bake_started(rt.store, interrupted.id, index)
    assert started is not None
    monkeypatch.delenv("CONVEYOR_FAILPOINTS")
    # Make it as if the process had died 59.5 s into the bake.
    rt.store.add_event(
        BAKE_EVENT,
        "test: moved back",
        ENV,
        interrupted.id,
        {"step": index, "started": (datetime.now(UTC) - timedelta(seconds=59.5)).isoformat()},
    )
    progress: list[str] = []
    clock = time.monotonic()
    resumed = await deployments.resume(rt, ENV, progress.append)
    took = time.monotonic() - clock
    assert resumed.id == interrupted.id and resumed.status == SUCCEEDED
    assert took < 20.0, took  # about 0.5 s of the 60 s bake were left, not all of it
    [going_on] = [p for p in progress if "the bake goes on after an interruption: " in p]
    assert float(going_on.rsplit(": ", 1)[1].removesuffix("s left")) <= 0.5, going_on
    rt.close()


@run_async
async def test_promote_ends_a_bake_and_abort_stops_one_and_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(tmp_path, monkeypatch, "{bake: 1m, interval: 100ms, smoke: [{command: 'true'}]}")
    # From "another terminal": the deploys run in this process, the requests reach them.
    first = asyncio.create_task(deploy(rt, "r1"))
    await _until_baking(rt)
    await deployments.promote(rt, ENV)
    assert (await first).status == SUCCEEDED
    _, status, note = verify_journal(rt, latest(rt).id)
    assert status == "skipped" and note is not None and "promoted by tester" in note

    second = asyncio.create_task(deploy(rt, "r2"))
    await _until_baking(rt)
    aborted = await deployments.abort(rt, ENV, "looks wrong")
    assert aborted.status == "aborted" and aborted.error == "looks wrong"
    assert (await second).status == "aborted"
    assert sorted(serving_releases(rt).values()) == ["r1", "r1"]
    rt.close()


@run_async
async def test_promote_full_skips_the_rollout_but_not_the_bake_to_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = config(
        "{bake: 300ms, interval: 100ms, smoke: [{command: 'true'}]}",
        "{type: canary, steps: [{set_weight: 50}, {pause: {}}], rollback_window: 0s}",
    ).replace("ON_INCONCLUSIVE", "pause")
    rt = open_runtime(tmp_path, monkeypatch, text)
    await deploy(rt, "r1")
    paused = await deploy(rt, "r2")
    assert paused.status == PAUSED
    promoted = await deployments.promote(rt, ENV, full=True)
    assert promoted.status == SUCCEEDED
    steps = rt.store.list_steps(promoted.id)
    verifies = [(s.status, s.error or "") for s in steps if s.kind == "verify"]
    assert [status for status, _ in verifies] == ["skipped", "done"], verifies
    assert verifies[1][1].startswith("baked 0.3s: ")
    rt.close()


async def _until_baking(rt: Runtime) -> None:
    for _ in range(400):
        steps = rt.store.list_steps(latest(rt).id) if rt.store.list_deployments(ENV) else []
        if any(s.kind == "verify" and s.status == "running" for s in steps):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the bake never started")


@pytest.mark.parametrize("window", ["1m", "300ms"], ids=["inside-the-window", "past-it"])
@run_async
async def test_a_bake_failing_inside_the_rollback_window_flips_back_past_it_starts_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    from conveyor.engine import warm

    monkeypatch.setattr(warm, "schedule", lambda rt, environment: None)  # no timer process
    broken = tmp_path / "broken"
    text = config(
        f"{{bake: 30s, interval: 100ms, smoke: [{{command: 'test ! -e {broken}'}}]}}",
        f"{{type: blue_green, rollback_window: {window}}}",
    ).replace("ON_INCONCLUSIVE", "pause")
    rt = open_runtime(tmp_path, monkeypatch, text)
    first = asyncio.create_task(deploy(rt, "r1"))
    await _until_baking(rt)
    await deployments.promote(rt, ENV)  # accept r1 without its bake
    await first
    before = serving_releases(rt)

    second = asyncio.create_task(deploy(rt, "r2"))
    await _until_baking(rt)
    await asyncio.sleep(0.5)  # well inside a window of 1m, past one of 300ms
    broken.touch()
    with pytest.raises(DeployError):
        await second
    record = latest(rt)
    assert record.status == ROLLED_BACK and record.error is not None
    assert "smoke test command test ! -e" in record.error
    after = serving_releases(rt)
    assert sorted(after.values()) == ["r1", "r1"]
    if window == "1m":  # the warm r1 instances serve again
        assert after == before
    else:  # they were past their window: r1 started again
        assert set(after).isdisjoint(before)
    rt.close()


@run_async
async def test_an_analysis_failing_during_the_bake_rolls_back_with_the_metric_and_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.routers.base import TrafficStats
    from tests.support.fakes import FakeRouter

    seen: dict[str, int] = {}

    async def traffic(router: FakeRouter, environment: str, service: str) -> dict[str, Any]:
        # Every backend has had 10 more requests at each look, 3 of them answered 5xx.
        out = {}
        for address in router.backends.get((environment, service), {}):
            seen[address] = seen.get(address, 0) + 10
            out[address] = TrafficStats(address, seen[address], status_5xx=3 * seen[address] // 10)
        return out

    monkeypatch.setattr(FakeRouter, "traffic_stats", traffic)
    rt = runtime(tmp_path, monkeypatch, "{bake: 2m, interval: 100ms, analysis: errors}")
    clock = time.monotonic()
    with pytest.raises(DeployError):
        await deploy(rt, "r1")
    assert time.monotonic() - clock < 30  # at once, not at the end of the 2 min bake
    record = latest(rt)
    assert record.status == ROLLED_BACK and record.error is not None
    assert record.error.startswith("verify failed "), record.error
    assert "analysis errors: FAIL after " in record.error
    assert "5xx rate 30% (" in record.error and "threshold error_rate < 1%" in record.error
    # Its measurements are kept for explain, under the verify step.
    index, _, _ = verify_journal(rt, record.id)
    rows = rt.store.list_measurements(record.id)
    assert rows and {r.step_index for r in rows} == {index}
    assert rows[-1].data["verdict"]["decision"] == "FAIL"
    rt.close()
