"""`HostGate`: how many hosts the SSH target acts on at once (`parallel:`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conveyor.targets.host_gate import HostGate


async def _busy(gate: HostGate, host: str, seen: list[tuple[str, ...]]) -> None:
    async with gate.acting_on(host):
        seen.append(gate.active)
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("parallel", [1, 2, 8])
def test_at_most_parallel_hosts_are_acted_on_at_once(parallel: int) -> None:
    gate = HostGate(parallel)
    seen: list[tuple[str, ...]] = []
    hosts = [f"h{i}" for i in range(10)]

    async def main() -> float:
        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(_busy(gate, h, seen) for h in hosts))
        return asyncio.get_running_loop().time() - started

    took = asyncio.run(main())
    assert max(len(active) for active in seen) == min(parallel, len(hosts))
    assert gate.active == ()
    assert took >= 0.01 * -(-len(hosts) // parallel) * 0.9  # ceil(10 / parallel) rounds


def test_work_on_a_host_that_holds_a_slot_shares_it() -> None:
    gate = HostGate(1)
    seen: list[tuple[str, ...]] = []

    async def main() -> None:
        async with gate.acting_on("h1"):  # e.g. a start that stops an old program there
            await asyncio.wait_for(
                asyncio.gather(*(_busy(gate, "h1", seen) for _ in range(3))), timeout=1
            )

    asyncio.run(main())
    assert seen == [("h1",)] * 3


def test_a_cancelled_wait_gives_no_slot_away() -> None:
    gate = HostGate(1)

    async def main() -> None:
        async with gate.acting_on("h1"):
            waiting = asyncio.create_task(_busy(gate, "h2", []))
            await asyncio.sleep(0.01)
            waiting.cancel()
        async with gate.acting_on("h3"):
            assert gate.active == ("h3",)

    asyncio.run(main())
    assert gate.active == ()


def test_the_ssh_target_takes_parallel_from_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.config import load_config
    from conveyor.engine.runtime import Runtime
    from conveyor.targets import ssh

    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    hosts = "[{name: a, address: 10.0.0.1, user: u}, {name: b, address: 10.0.0.2, user: u}]"
    (tmp_path / "conveyor.yml").write_text(
        "project: p\nservices:\n  web: {run: serve}\nenvironments:\n"
        f"  wide: {{listen: ':80', target: ssh, hosts: {hosts}}}\n"
        f"  narrow: {{listen: ':81', target: ssh, parallel: 1, hosts: {hosts}}}\n"
    )
    rt = Runtime.open(load_config(tmp_path / "conveyor.yml", environ={}), "tester")
    try:
        assert ssh.build(rt, "narrow").gate.parallel == 1
        assert ssh.build(rt, "wide").gate.parallel == 8
    finally:
        rt.close()
