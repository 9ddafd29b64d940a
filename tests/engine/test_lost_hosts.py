"""A host lost in the middle of a deploy, against the in-memory fakes: its instances get
weight 0 and the deployment rolls back on the other hosts (the e2e test with real hosts
is tests/e2e/test_fleet_faults.py)."""

from __future__ import annotations

import pytest

from conveyor.engine import deployments
from conveyor.engine.runtime import Runtime
from conveyor.errors import DeployError, HostUnreachableError
from conveyor.store.records import ROLLED_BACK
from conveyor.targets.base import InstanceSpec
from tests.engine.test_executor_fakes import ENV, deploy, fakes, run_async, serving_releases
from tests.engine.test_executor_fakes import rt as rt  # the fixture


@run_async
async def test_a_host_lost_mid_deploy_loses_its_traffic_and_the_rest_rolls_back(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, router = fakes(rt)
    await deploy(rt, "r1")
    on_h2 = {i.name: i.address for i in rt.store.list_instances(ENV) if i.host == "h2"}
    assert len(on_h2) == 1 and router.serving(ENV, "api") >= set(on_h2.values())
    lost: set[str] = set()
    start, stop = target.start, target.stop

    async def start_unless_lost(spec: InstanceSpec) -> None:
        if spec.host == "h2":
            lost.add("h2")
            raise HostUnreachableError("h2", "host h2 (deploy@10.0.0.2:22) is unreachable")
        await start(spec)

    async def stop_unless_lost(name: str, timeout: float) -> None:
        if name not in target.running or target.host_of(name) not in lost:
            await stop(name, timeout)

    monkeypatch.setattr(target, "start", start_unless_lost)
    monkeypatch.setattr(target, "stop", stop_unless_lost)
    monkeypatch.setattr(
        target, "hosts", lambda roles=(): tuple(h for h in target.host_names if h not in lost)
    )
    said: list[str] = []
    proposal = await deployments.propose(rt, ENV, {"api": "r2"}, migrate=True)
    import dataclasses

    from conveyor.engine.plan import Plan, VerifyRelease

    steps = tuple(s for s in proposal.plan.steps if not isinstance(s, VerifyRelease))
    proposal = dataclasses.replace(proposal, plan=Plan(ENV, steps))
    with pytest.raises(DeployError) as failed:
        await deployments.deploy(rt, proposal, progress=said.append)
    message = failed.value.message
    assert "failed and was rolled back" in message and "host h2 (" in message
    assert "(start " in message  # the step
    assert f"host h2 is unreachable: no more traffic to {next(iter(on_h2))}" in said
    [latest] = rt.store.list_deployments(ENV, limit=1)
    assert latest.status == ROLLED_BACK
    # h2's instance gets nothing; three r1 instances serve on h1 and h3.
    assert router.serving(ENV, "api").isdisjoint(on_h2.values())
    assert sorted(serving_releases(rt).values()) == ["r1", "r1", "r1"]
    assert {i.host for i in rt.store.list_instances(ENV)} == {"h1", "h3"}
    await target.close()
