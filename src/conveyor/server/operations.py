"""Changes the API starts: each runs in a thread of its own with its own event loop, as a
CLI command would, so that a long deploy never holds up the API's answers.

An operation says when it has started (`announce`: the id of the deployment it acts
on); the API then answers with the outcome when it ends within a moment, else 202
with that id to follow. A deploy interrupted by the server's stop is an interrupted
deployment like any other: `conveyor resume ENV` (or the API's resume) finishes it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("conveyor.server")

Announce = Callable[[str], None]
Work = Callable[[Announce], Coroutine[Any, Any, Any]]

# How long the API waits for an operation that has started to end, before answering 202.
ANSWER_WITHIN_S = 2.0


@dataclass(frozen=True)
class Answer:
    """The outcome of an operation (`ended`), or the deployment it goes on with (202)."""

    ended: bool
    result: Any  # the work's result when ended, else the announced deployment id


def launch(work: Work, name: str) -> tuple[Future[str], Future[Any]]:
    """Run `work` in a new thread; the futures of its announcement and of its result."""
    started: Future[str] = Future()
    done: Future[Any] = Future()

    def announce(deployment_id: str) -> None:
        if not started.done():
            started.set_result(deployment_id)

    def main() -> None:
        try:
            result = asyncio.run(work(announce))
        except BaseException as exc:  # handed to the request that waits (and logged)
            if started.done():  # the request may have answered 202 already
                log.warning("%s ended: %s", name, exc)
            done.set_exception(exc)
        else:
            done.set_result(result)

    threading.Thread(target=main, name=name, daemon=True).start()
    return started, done


def answer(started: Future[str], done: Future[Any], within_s: float = ANSWER_WITHIN_S) -> Answer:
    """The operation's outcome once it ended, if it ends at most `within_s` after it
    announced its deployment; else that deployment's id. Re-raises what the work raised."""
    wait([started, done], return_when=FIRST_COMPLETED)
    if not done.done():
        wait([done], timeout=within_s)
    if done.done():
        return Answer(True, done.result())
    return Answer(False, started.result())
