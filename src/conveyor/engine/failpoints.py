"""Named failpoints so tests can kill or break the executor at exact places.

`CONVEYOR_FAILPOINTS="executor.after_step:3=crash,executor.before_step:1=error"`

Names in use: `executor.before_step:N` (step N journaled as started, nothing
done yet), `executor.step_done:N` (step N's side effects done, journal not yet
updated) and `executor.after_step:N` (step N journaled as done). Steps count
from 1 within a deployment; `release_phase.before_verify` (a release phase's
backup is written, not yet verified); `verify.after_round:N` (the Nth round of a
bake's smoke tests passed, counted from 1 in each run of the step). Actions: `crash`
(SIGKILL this process, as a `kill -9` would), `error` (raise an error, as a bug
would), `sleep:SECONDS` and `wait:PATH` (say so on stderr, then block until the file
PATH exists: a test does something to the world, e.g. fills the disk, at that exact
point, then creates PATH).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

ENV_VAR = "CONVEYOR_FAILPOINTS"


class FailpointError(RuntimeError):
    """Raised by an `error` failpoint."""


def _parse(spec: str) -> dict[str, str]:
    points: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        points[name.strip()] = action.strip() or "crash"
    return points


def hit(name: str) -> None:
    """Trigger the failpoint `name` if `CONVEYOR_FAILPOINTS` arms it."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    action = _parse(spec).get(name)
    if action is None:
        return
    if action == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "error":
        raise FailpointError(f"failpoint {name} triggered")
    elif action.startswith("sleep:"):
        time.sleep(float(action.split(":", 1)[1]))
    elif action.startswith("wait:"):
        go_on = Path(action.split(":", 1)[1])
        sys.stderr.write(f"failpoint {name}: waiting for {go_on}\n")
        sys.stderr.flush()
        while not go_on.exists():
            time.sleep(0.02)
