"""The executor and the deploy flow against the in-memory fakes of tests/support/fakes.py.

Fast (no supervisord, no router process): start, health, weights, drain and
stop; a failure rolling back; resume after the executor died mid-plan; and
placement across three fake hosts with each release shipped to each host
before anything starts from it. The e2e tests cover the same with the real
parts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import textwrap
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import load_config
from conveyor.engine import deployments
from conveyor.engine.failpoints import FailpointError
from conveyor.engine.plan import Plan, VerifyRelease
from conveyor.engine.runtime import Runtime
from conveyor.errors import DeployError
from conveyor.store.records import ROLLED_BACK, RUNNING, SUCCEEDED, ReleaseRecord
from tests.support.fakes import FakeRouter, FakeTarget, use_fakes

CONFIG = textwrap.dedent(
    """
    project: demo
    services:
      api:
        run: "serve"
        run_as: root
        replicas: 3
        health: {type: tcp, interval: 100ms}
        deploy_timeout: 10s
    environments:
      staging:
        listen: "127.0.0.1:18080"
        strategy: {type: rolling, max_surge: 1, max_unavailable: 0}
    """
)
ENV = "staging"


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


@pytest.fixture
def rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    runtime = open_runtime(tmp_path, monkeypatch, CONFIG)
    yield runtime
    runtime.close()


def open_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str) -> Runtime:
    """A runtime on the fakes for `config`, with releases r1 and r2 of its service api."""
    use_fakes(monkeypatch)
    monkeypatch.delenv("CONVEYOR_FAILPOINTS", raising=False)
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    (tmp_path / "conveyor.yml").write_text(config)
    runtime = Runtime.open(load_config(tmp_path / "conveyor.yml", environ={}), "tester")
    for release in ("r1", "r2"):
        path = tmp_path / "releases" / release
        path.mkdir(parents=True)
        runtime.store.add_release(
            ReleaseRecord(
                id=release,
                service="api",
                path=str(path),
                digest=hashlib.sha256(release.encode()).hexdigest(),
                source_digest="s",
                created_at=datetime.now(UTC),
                built_by="tester",
            )
        )
    return runtime


def fakes(rt: Runtime) -> tuple[FakeTarget, FakeRouter]:
    target, router = rt.target_for(ENV), rt.router_for(ENV)
    assert isinstance(target, FakeTarget) and isinstance(router, FakeRouter)
    return target, router


async def deploy(rt: Runtime, release: str) -> deployments.DeploymentRecord:
    proposal = await deployments.propose(rt, ENV, {"api": release}, migrate=True)
    # The releases here are directories without a manifest: their digest is not checked.
    steps = tuple(s for s in proposal.plan.steps if not isinstance(s, VerifyRelease))
    proposal = dataclasses.replace(proposal, plan=Plan(ENV, steps))
    return await deployments.deploy(rt, proposal)


def serving_releases(rt: Runtime) -> dict[str, str]:
    """Instance name -> release, of the instances the router sends traffic to."""
    _, router = fakes(rt)
    serving = router.serving(ENV, "api")
    return {i.name: i.release_id for i in rt.store.list_instances(ENV) if i.address in serving}


@run_async
async def test_deploy_starts_checks_routes_then_replaces_across_three_hosts(rt: Runtime) -> None:
    target, router = fakes(rt)
    first = await deploy(rt, "r1")
    assert first.status == SUCCEEDED
    assert sorted(serving_releases(rt).values()) == ["r1", "r1", "r1"]
    # One instance on each host, each release shipped to each host before it started there.
    assert [len(target.on(h)) for h in ("h1", "h2", "h3")] == [1, 1, 1]
    digest1 = hashlib.sha256(b"r1").hexdigest()
    assert target.shipped == [("h1", digest1), ("h2", digest1), ("h3", digest1)]
    records = rt.store.list_instances(ENV)
    assert {r.host for r in records} == {"h1", "h2", "h3"}
    assert all(r.address == f"127.0.0.1:{r.port}" for r in records)

    router.history.clear()
    second = await deploy(rt, "r2")
    assert second.status == SUCCEEDED
    assert sorted(serving_releases(rt).values()) == ["r2", "r2", "r2"]
    assert [len(target.on(h)) for h in ("h1", "h2", "h3")] == [1, 1, 1]
    # Rolling, one at a time: every weight change kept three instances serving, and each
    # old instance was drained before it stopped.
    assert [sum(w > 0 for w in weights.values()) for _, _, weights in router.history] == [3] * 3
    assert len(router.drained) == 3
    assert {r.name for r in records}.isdisjoint(target.running)
    await target.close()


@run_async
async def test_a_release_that_never_gets_healthy_is_rolled_back(rt: Runtime) -> None:
    target, _ = fakes(rt)
    await deploy(rt, "r1")
    before = serving_releases(rt)
    target.broken.add("r2")
    with pytest.raises(DeployError) as failed:
        await deploy(rt, "r2")
    assert "not healthy" in failed.value.message and "boom: cannot start" in failed.value.message
    [latest] = rt.store.list_deployments(ENV, limit=1)
    assert latest.status == ROLLED_BACK
    assert serving_releases(rt) == before  # the same r1 instances serve, untouched
    assert all(spec.release_id == "r1" for spec in target.running.values())
    assert rt.store.current_releases(ENV) == {"api": "r1"}
    await target.close()


@run_async
async def test_resume_after_the_executor_died_mid_plan(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, _ = fakes(rt)
    await deploy(rt, "r1")
    # Dies right after step 6 is journaled as done (as a kill -9 would leave it, the
    # deployment still says running).
    monkeypatch.setenv("CONVEYOR_FAILPOINTS", "executor.after_step:6=error")
    with pytest.raises(FailpointError):
        await deploy(rt, "r2")
    [interrupted] = rt.store.list_deployments(ENV, limit=1)
    assert interrupted.status == RUNNING
    assert "r1" in serving_releases(rt).values()  # mid-way: both releases serve
    monkeypatch.delenv("CONVEYOR_FAILPOINTS")

    resumed = await deployments.resume(rt, ENV)
    assert resumed.id == interrupted.id and resumed.status == SUCCEEDED
    assert sorted(serving_releases(rt).values()) == ["r2", "r2", "r2"]
    assert sorted(target.running) == sorted(i.name for i in rt.store.list_instances(ENV))
    await target.close()
