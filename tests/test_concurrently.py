"""`every`: all awaitables finish before the first failure is raised."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.concurrently import every


def test_results_come_back_in_the_order_given() -> None:
    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    assert asyncio.run(every(after(0.02, 1), after(0.0, 2), after(0.01, 3))) == [1, 2, 3]


def test_a_failure_is_raised_only_once_the_others_are_done() -> None:
    finished: list[str] = []

    async def fails_first() -> None:
        raise ValueError("first")

    async def slow() -> None:
        await asyncio.sleep(0.05)
        finished.append("slow")

    async def fails_later() -> None:
        await asyncio.sleep(0.02)
        raise KeyError("later")

    async def main() -> None:
        with pytest.raises(ValueError, match="first"):
            await every(fails_first(), slow(), fails_later())
        # nothing is left running behind the raised error
        assert finished == ["slow"]
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    asyncio.run(main())


def test_the_first_failure_by_position_wins() -> None:
    async def fails(delay: float, message: str) -> None:
        await asyncio.sleep(delay)
        raise RuntimeError(message)

    with pytest.raises(RuntimeError, match="host1"):
        asyncio.run(every(fails(0.03, "host1"), fails(0.0, "host2")))
