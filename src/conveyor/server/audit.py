"""The audit of `conveyor server`: every request that changes something, by whom."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.redaction import redact_registered
from conveyor.store.records import AuditRecord, TokenRecord

log = logging.getLogger("conveyor.server")


def audit_json(entry: AuditRecord) -> dict[str, Any]:
    """One audited request as `conveyor audit --json` and `GET /api/audit` show it."""
    from conveyor.cli.output import iso

    return {
        "time": iso(entry.time),
        "token": entry.token,
        "role": entry.role,
        "method": entry.method,
        "path": entry.path,
        "environment": entry.environment,
        "deployment_id": entry.deployment_id,
        "status": entry.status,
        "outcome": entry.outcome,
    }


def record_audit(
    store: Any, token: TokenRecord, method: str, path: str, status: int, state: Any
) -> None:
    """Write one answered request; `state` (the request's) may say its environment,
    deployment and outcome."""
    try:
        store.add_audit(
            AuditRecord(
                id=0,  # numbered by the database
                time=datetime.now(UTC),
                token=token.name,
                role=token.role,
                method=method,
                path=path,
                status=status,
                outcome=redact_registered(getattr(state, "outcome", None) or str(status)),
                environment=getattr(state, "environment", None),
                deployment_id=getattr(state, "deployment_id", None),
            )
        )
    except ConveyorError as exc:  # the answer is given: say so in the log
        log.error("could not audit %s %s of %s: %s", method, path, token.name, exc)
