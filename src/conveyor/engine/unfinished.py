"""Describing interrupted deployments: light enough for `conveyor status`."""

from __future__ import annotations

import os
import socket
from typing import Protocol

from conveyor.store.records import (
    AWAITING_APPROVAL,
    PAUSED,
    STEP_COMPLETE,
    DeploymentRecord,
    LockRecord,
    StepRecord,
)


class JournalReader(Protocol):
    """Reads the steps journal (the `Store` and the status snapshot reader both do)."""

    def list_steps(self, deployment_id: str) -> list[StepRecord]:
        """The journal of a deployment, by step index."""
        ...


def process_alive(lock: LockRecord) -> bool:
    """Whether the process that holds a lock still runs (unknowable on another host)."""
    if lock.pid is None:
        return False
    if lock.hostname and lock.hostname != socket.gethostname():
        return True
    try:
        os.kill(lock.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def position(journal: JournalReader, deployment: DeploymentRecord) -> str:
    """`at step 4/9 (drain ...)`, or `after step 9/9` when every journaled step completed."""
    steps = journal.list_steps(deployment.id)
    done = sum(1 for s in steps if s.status in STEP_COMPLETE)
    pending = [s for s in steps if s.status not in STEP_COMPLETE]
    if pending:
        return f"at step {pending[0].index}/{len(deployment.plan)} ({pending[0].description})"
    return f"after step {done}/{len(deployment.plan)}"


def describe_unfinished(journal: JournalReader, deployment: DeploymentRecord) -> str:
    """`deployment X of staging (running) was interrupted at step 4/9 (drain ...)`."""
    steps = journal.list_steps(deployment.id)
    where = position(journal, deployment)
    pending = [s for s in steps if s.status not in STEP_COMPLETE]
    if deployment.status == PAUSED:
        why = f": {pending[0].error}" if pending and pending[0].error else ""
        return f"deployment {deployment.id} of {deployment.environment} is paused {where}{why}"
    if deployment.status == AWAITING_APPROVAL:
        return f"deployment {deployment.id} of {deployment.environment} awaits approval"
    return (
        f"deployment {deployment.id} of {deployment.environment} ({deployment.status}) "
        f"was interrupted {where}"
    )


def next_commands(deployment: DeploymentRecord) -> str:
    """What the user can do about an unfinished deployment."""
    return next_commands_of(deployment.environment, deployment.status, deployment.id)


def next_commands_of(env: str, status: str, deployment_id: str) -> str:
    """What the user can do about the unfinished deployment `deployment_id` of `env`."""
    if status == AWAITING_APPROVAL:
        return (
            f'an approver runs "conveyor approve {deployment_id}" (or "conveyor reject '
            f'{deployment_id}"); then "conveyor resume {env}" if no deploy is waiting for it'
        )
    if status == PAUSED:
        return (
            f'run "conveyor promote {env}" to go on, "conveyor resume {env}" to run the '
            f'paused step again, or "conveyor abort {env}" to roll it back'
        )
    return f'run "conveyor resume {env}" to finish it or "conveyor abort {env}" to roll it back'
