"""Workers and singletons through the deploy flow, against the in-memory fakes of
tests/support/fakes.py (the executor, planners and handlers are real; the target and
router are the fakes): a worker gets no port, no router entry and no traffic; the
services go in their `after:` order; a singleton never runs twice, through a deploy,
a failed deploy's rollback, an abort and a resume. The e2e tests
(tests/e2e/test_workers.py, tests/e2e/test_fleet_workers.py) do the same with the real
parts and Celery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.engine import deployments
from conveyor.engine.explain import explanation, render
from conveyor.engine.failpoints import FailpointError
from conveyor.engine.plan import Plan, VerifyRelease
from conveyor.engine.runtime import Runtime
from conveyor.engine.worker_health import wait_worker_healthy
from conveyor.errors import DeployError, HealthCheckError
from conveyor.store.records import ABORTED, ROLLED_BACK, RUNNING, SUCCEEDED, ReleaseRecord
from conveyor.targets.base import BACKOFF, InstanceSpec, InstanceStatus
from tests.engine.test_executor_fakes import run_async
from tests.support.fakes import FakeRouter, FakeTarget, use_fakes

CONFIG = textwrap.dedent(
    """
    project: demo
    services:
      worker:
        run: "celery worker"
        replicas: 2
        after: [web]
        stop_signal: INT
      beat:
        run: "celery beat"
        singleton: true
        after: [web]
      web:
        run: "serve"
        health: {type: tcp, interval: 100ms}
        deploy_timeout: 10s
    environments:
      staging:
        listen: "127.0.0.1:18080"
        strategy: {type: rolling, max_surge: 1, min_ready: 0s}
      production:
        listen: "127.0.0.1:18090"
        strategy:
          type: canary
          min_ready: 0s
          steps: [{set_weight: 50}, {pause: {}}]
    """
)
SERVICES = ("web", "worker", "beat")


class CountingTarget(FakeTarget):
    """The fake target, keeping the most instances of each service it ever ran at once."""

    most: dict[str, int]

    async def start(self, spec: InstanceSpec) -> None:
        await super().start(spec)
        at_once = sum(1 for s in self.running.values() if s.service == spec.service)
        self.most[spec.service] = max(self.most.get(spec.service, 0), at_once)


@pytest.fixture
def rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    use_fakes(monkeypatch)
    target = CountingTarget(host_names=("local",), ships_releases=False)
    target.most = {}
    monkeypatch.setattr("tests.support.fakes.build_target", lambda rt, env: target)
    monkeypatch.delenv("CONVEYOR_FAILPOINTS", raising=False)
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    runtime = Runtime.open(load_config(tmp_path / "conveyor.yml", environ={}), "tester")
    for service in SERVICES:
        for release in ("r1", "r2"):
            path = tmp_path / "releases" / service / release
            path.mkdir(parents=True)
            runtime.store.add_release(
                ReleaseRecord(
                    id=release,
                    service=service,
                    path=str(path),
                    digest=hashlib.sha256(release.encode()).hexdigest(),
                    source_digest="s",
                    created_at=datetime.now(UTC),
                    built_by="tester",
                )
            )
    yield runtime
    runtime.close()


def fakes(rt: Runtime, env: str = "staging") -> tuple[CountingTarget, FakeRouter]:
    target, router = rt.target_for(env), rt.router_for(env)
    assert isinstance(target, CountingTarget) and isinstance(router, FakeRouter)
    return target, router


async def deploy(rt: Runtime, release: str, env: str = "staging") -> deployments.DeploymentRecord:
    proposal = await deployments.propose(rt, env, dict.fromkeys(SERVICES, release), migrate=True)
    steps = tuple(s for s in proposal.plan.steps if not isinstance(s, VerifyRelease))
    return await deployments.deploy(rt, dataclasses.replace(proposal, plan=Plan(env, steps)))


def running(rt: Runtime, service: str) -> list[str]:
    """The releases of the instances of `service` the fake target runs."""
    target, _ = fakes(rt)
    return sorted(s.release_id for s in target.running.values() if s.service == service)


@run_async
async def test_workers_get_no_port_no_route_and_go_after_web(rt: Runtime) -> None:
    target, router = fakes(rt)
    proposal = await deployments.propose(rt, "staging", dict.fromkeys(SERVICES, "r1"))
    acting = [s for s in proposal.plan.steps if not isinstance(s, VerifyRelease)]
    order = list(dict.fromkeys(s.service for s in acting))
    assert order == ["web", "worker", "beat"]  # after: [web]
    assert proposal.services == (  # what `deploy --dry-run` shows of them
        ("web", "web", "rolling"),
        ("worker", "worker", "rolling"),
        ("beat", "singleton", "recreate"),
    )
    assert all(
        s.kind not in ("set_weights", "drain") for s in proposal.plan.steps if s.service != "web"
    )
    first = await deploy(rt, "r1")
    assert first.status == SUCCEEDED
    explained = explanation(rt.store, first.id)
    assert explained["order"] == ["web", "worker", "beat"]
    assert "  order: web -> worker -> beat" in render(explained)
    workers = rt.store.list_instances("staging", "worker")
    assert len(workers) == 2 and all(i.port == 0 and i.address == "" for i in workers)
    assert all(i.state == "serving" for i in workers)
    specs = [s for s in target.running.values() if s.service != "web"]
    assert specs and all("PORT" not in s.env and "HOST" not in s.env for s in specs)
    assert {s.stop_signal for s in specs if s.service == "worker"} == {"INT"}
    # A worker's stop signal goes to its own process (Celery's main one), not its group.
    assert {s.stop_as_group for s in target.running.values()} == {True, False}
    assert not any(s.stop_as_group for s in specs)
    # The router knows the web service only; nothing was ever routed to a worker.
    assert {service for _, service in router.backends} == {"web"}
    assert all(service == "web" for _, service, _ in router.history)

    assert (await deploy(rt, "r2")).status == SUCCEEDED
    assert running(rt, "worker") == ["r2", "r2"] and running(rt, "beat") == ["r2"]
    assert target.most["worker"] == 3  # rolled with max_surge 1
    assert target.most["beat"] == 1  # a singleton: recreate, whatever the environment says
    await target.close()


@run_async
async def test_a_singleton_never_runs_twice_through_a_rollback(rt: Runtime) -> None:
    target, _ = fakes(rt)
    await deploy(rt, "r1")
    target.broken.add("r2")  # every r2 instance crashes: the worker's fails first
    with pytest.raises(DeployError) as failed:
        await deploy(rt, "r2")
    assert "not healthy" in failed.value.message
    [latest] = rt.store.list_deployments("staging", limit=1)
    assert latest.status == ROLLED_BACK
    assert running(rt, "beat") == ["r1"] and running(rt, "worker") == ["r1", "r1"]
    assert target.most["beat"] == 1
    await target.close()


@pytest.mark.parametrize("then", ["resume", "abort"])
@run_async
async def test_a_singleton_never_runs_twice_through_a_crash_then_resume_or_abort(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    target, _ = fakes(rt)
    await deploy(rt, "r1")
    proposal = await deployments.propose(rt, "staging", dict.fromkeys(SERVICES, "r2"))
    steps = [s for s in proposal.plan.steps if not isinstance(s, VerifyRelease)]
    stop_beat = next(i for i, s in enumerate(steps, 1) if s.service == "beat" and s.kind == "stop")
    # Dies right after the old beat stopped, before the new one started (as a kill -9 would).
    monkeypatch.setenv("CONVEYOR_FAILPOINTS", f"executor.after_step:{stop_beat}=error")
    with pytest.raises(FailpointError):
        await deploy(rt, "r2")
    [interrupted] = rt.store.list_deployments("staging", limit=1)
    assert interrupted.status == RUNNING and running(rt, "beat") == []
    monkeypatch.delenv("CONVEYOR_FAILPOINTS")
    if then == "resume":
        assert (await deployments.resume(rt, "staging")).status == SUCCEEDED
        assert running(rt, "beat") == ["r2"]
    else:
        assert (await deployments.abort(rt, "staging")).status == ABORTED
        assert running(rt, "beat") == ["r1"] and running(rt, "worker") == ["r1", "r1"]
    assert target.most["beat"] == 1
    await target.close()


@run_async
async def test_under_a_canary_workers_roll_and_a_singleton_is_recreated_also_on_abort(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rollback window's timer is a supervisord program: not in a test of the flow.
    monkeypatch.setattr("conveyor.engine.warm.schedule", lambda rt, environment: None)
    target, router = fakes(rt, "production")
    await deploy(rt, "r1", "production")
    paused = await deploy(rt, "r2", "production")  # web waits at its pause {}
    assert paused.status == "paused"
    steps = [s for s in (await rt_plan(rt, paused.id)) if s.service != "web"]
    assert steps == []  # web first: the workers' turn comes after the web service's rollout
    # Promote: web goes to r2 (flip), then the worker rolls and the singleton is recreated.
    done = await deployments.promote(rt, "production", full=True)
    assert done.status == SUCCEEDED
    assert running(rt, "worker") == ["r2", "r2"] and running(rt, "beat") == ["r2"]
    assert not [
        i for i in rt.store.list_instances("production") if i.warm_until and i.service != "web"
    ]  # nothing of a worker is kept warm
    # Another rollout, aborted after the workers moved: they come back by their own strategy.
    target.most.clear()
    paused = await deploy(rt, "r1", "production")
    aborted = await deployments.abort(rt, "production")
    assert aborted.status == ABORTED
    assert running(rt, "beat") == ["r2"] and target.most.get("beat", 0) <= 1
    assert {service for _, service in router.backends} == {"web"}
    await target.close()


async def rt_plan(rt: Runtime, deployment_id: str) -> list[deployments.Step]:
    """The steps of a deployment journaled as done."""
    from conveyor.engine.plan import steps_from_json

    record = rt.store.get_deployment(deployment_id)
    assert record is not None
    done = {s.index for s in rt.store.list_steps(deployment_id) if s.status == "succeeded"}
    return [s for i, s in enumerate(steps_from_json(record.plan), 1) if i in done]


class Statuses:
    """A target whose status answers come from a list (the last one repeats)."""

    def __init__(self, *answers: InstanceStatus) -> None:
        self.answers = list(answers)

    async def status(self, name: str) -> InstanceStatus:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@run_async
async def test_a_worker_is_healthy_after_running_min_ready_and_not_if_it_crashes() -> None:
    steady = Statuses(InstanceStatus("w", "starting", pid=7), InstanceStatus("w", "running", pid=7))
    started = asyncio.get_running_loop().time()
    await wait_worker_healthy(steady, "w", min_ready=0.5, timeout=5)  # type: ignore[arg-type]
    assert asyncio.get_running_loop().time() - started >= 0.5

    crashing = Statuses(
        InstanceStatus("w", "running", pid=7),
        InstanceStatus("w", "running", pid=9, restarts=1),  # exited after 1s, restarted
    )
    with pytest.raises(HealthCheckError, match="exited and was restarted"):
        await wait_worker_healthy(crashing, "w", min_ready=2, timeout=5)  # type: ignore[arg-type]
    looping = Statuses(InstanceStatus("w", "running", pid=7), InstanceStatus("w", BACKOFF))
    with pytest.raises(HealthCheckError, match="backoff, not running"):
        await wait_worker_healthy(looping, "w", min_ready=2, timeout=5)  # type: ignore[arg-type]
