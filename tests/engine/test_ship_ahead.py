"""Ship steps run their transfers at the same time (`conveyor.engine.ship_ahead`), each
step still journaled for its own host: unit tests of `ShipAhead`, and a deploy over the
fake target of tests/support/fakes.py whose transfers wait for each other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conveyor.engine.plan import FORWARD, ShipRelease, StartInstances, Step
from conveyor.engine.runtime import Runtime
from conveyor.engine.ship_ahead import ShipAhead, ships_after
from conveyor.errors import TargetError
from conveyor.store.records import STEP_DONE, STEP_FAILED, SUCCEEDED
from tests.engine.test_executor_fakes import deploy, fakes, run_async
from tests.engine.test_executor_fakes import rt as rt  # the fixture


def ship(host: str, release: str = "r1") -> ShipRelease:
    return ShipRelease("api", FORWARD, release=release, host=host)


class Transfers:
    """A fake transfer per host that waits until released; counts what ran at once."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.started: list[str] = []
        self.running = 0
        self.most = 0
        self.gate = asyncio.Event()
        self.failing = failing
        self.cancelled: list[str] = []

    async def __call__(self, step: ShipRelease) -> None:
        self.started.append(step.host)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.gate.wait()
            if step.host in self.failing:
                raise TargetError(f"host {step.host}: cannot send release {step.release}")
        except asyncio.CancelledError:
            self.cancelled.append(step.host)
            raise
        finally:
            self.running -= 1


def test_ships_after_takes_the_ship_steps_up_to_the_first_other_step() -> None:
    start = StartInstances("api", FORWARD, release="r1", instances=("a",))
    steps: list[Step] = [ship("h2"), ship("h3"), start, ship("h4")]
    assert [s.host for s in ships_after(steps)] == ["h2", "h3"]
    assert ships_after([start, ship("h2")]) == []


@run_async
async def test_the_first_ship_step_starts_every_following_transfer_at_once() -> None:
    plan = [ship("h1"), ship("h2"), ship("h3")]
    transfers = Transfers()
    ahead = ShipAhead()
    first = asyncio.create_task(ahead.ship(plan[0], plan[1:], transfers))
    await asyncio.sleep(0.01)
    assert transfers.started == ["h1", "h2", "h3"] and transfers.most == 3
    transfers.gate.set()
    await first
    # The later steps wait for the transfers started for them: none starts again.
    await ahead.ship(plan[1], plan[2:], transfers)
    await ahead.ship(plan[2], [], transfers)
    assert transfers.started == ["h1", "h2", "h3"] and ahead.pending == 0
    await ahead.close()


@run_async
async def test_a_failed_transfer_fails_the_step_of_its_own_host() -> None:
    plan = [ship("h1"), ship("h2"), ship("h3")]
    transfers = Transfers(failing=frozenset({"h2"}))
    transfers.gate.set()
    ahead = ShipAhead()
    await ahead.ship(plan[0], plan[1:], transfers)  # h1's step passes, h2's failed already
    with pytest.raises(TargetError, match="host h2: cannot send release r1"):
        await ahead.ship(plan[1], plan[2:], transfers)
    await ahead.close()
    assert transfers.started == ["h1", "h2", "h3"]


@run_async
async def test_transfers_no_step_waits_for_are_cancelled_when_the_run_ends() -> None:
    plan = [ship("h1"), ship("h2"), ship("h3")]
    transfers = Transfers()
    ahead = ShipAhead()
    first = asyncio.create_task(ahead.ship(plan[0], plan[1:], transfers))
    await asyncio.sleep(0.01)
    first.cancel()  # the run is interrupted during h1's step: h2 and h3 are still sending
    with pytest.raises(asyncio.CancelledError):
        await first
    assert ahead.pending == 2
    await ahead.close()
    assert sorted(transfers.cancelled) == ["h1", "h2", "h3"] and transfers.running == 0
    assert ahead.pending == 0


@run_async
async def test_a_deploy_ships_to_its_hosts_at_the_same_time(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, _ = fakes(rt)
    sending: list[str] = []
    all_sending = asyncio.Event()
    shipped = target.ship

    async def ship_with_the_others(host: str, release_dir: Path, digest: str) -> None:
        """A transfer that ends only once all three have started: transfers run one after
        another would never get there (and the deploy would fail on the timeout)."""
        sending.append(host)
        if len(sending) == 3:
            all_sending.set()
        await asyncio.wait_for(all_sending.wait(), 10)
        await shipped(host, release_dir, digest)

    monkeypatch.setattr(target, "ship", ship_with_the_others)
    record = await deploy(rt, "r1")
    assert record.status == SUCCEEDED, record.error
    ships = [s for s in rt.store.list_steps(record.id) if s.kind == "ship"]
    assert [s.status for s in ships] == [STEP_DONE] * 3
    assert [s.description.split()[3] for s in ships] == ["h1", "h2", "h3"]
    assert sorted(sending) == ["h1", "h2", "h3"]
    await target.close()


@run_async
async def test_a_host_that_cannot_take_the_release_fails_its_own_ship_step(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, _ = fakes(rt)

    async def failing_ship(host: str, release_dir: Path, digest: str) -> None:
        await asyncio.sleep(0.05)
        if host == "h2":
            raise TargetError(f"host {host}: cannot send release: disk full")

    monkeypatch.setattr(target, "ship", failing_ship)
    from conveyor.errors import DeployError

    with pytest.raises(DeployError) as failed:
        await deploy(rt, "r1")
    assert "h2" in failed.value.message
    [deployment] = rt.store.list_deployments(limit=1)
    ships = [s for s in rt.store.list_steps(deployment.id) if s.kind == "ship"]
    assert [s.status for s in ships[:2]] == [STEP_DONE, STEP_FAILED]
    assert ships[1].error is not None and "host h2: cannot send release" in ships[1].error
    assert not target.running  # nothing started anywhere
    await target.close()
