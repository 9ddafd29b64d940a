"""Run awaitables at the same time and wait for every one of them.

`asyncio.gather` returns (raises) at the first failure while the others go on
unwatched: a deploy step would start rolling back while its sibling starts still
run, and a failure that comes later is only logged by asyncio at exit, as a
traceback. `every` waits for all, then raises the first failure in the order given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar, cast

T = TypeVar("T")

__all__ = ["every"]


async def every(*awaitables: Awaitable[T]) -> list[T]:
    """The results in order, once all are done; the first failure (by position) raised."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[T], results)
