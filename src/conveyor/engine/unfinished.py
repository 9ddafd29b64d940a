"""Describing interrupted deployments: light enough for `conveyor status`."""

from __future__ import annotations

import os
import socket
from typing import Protocol

from conveyor.store.records import STEP_DONE, DeploymentRecord, LockRecord, StepRecord


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


def describe_unfinished(journal: JournalReader, deployment: DeploymentRecord) -> str:
    """`deployment X of staging (running) was interrupted at step 4/9 (drain ...)`."""
    steps = journal.list_steps(deployment.id)
    done = sum(1 for s in steps if s.status == STEP_DONE)
    where = f"after step {done}/{len(deployment.plan)}"
    pending = [s for s in steps if s.status != STEP_DONE]
    if pending:
        where = f"at step {pending[0].index}/{len(deployment.plan)} ({pending[0].description})"
    return (
        f"deployment {deployment.id} of {deployment.environment} ({deployment.status}) "
        f"was interrupted {where}"
    )
