"""Plain records the store returns: detached from any database session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Deployment statuses.
PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"  # failed and could not restore the previous state
ROLLED_BACK = "rolled_back"  # failed, previous releases restored automatically
ABORTED = "aborted"  # stopped by `conveyor abort`, previous releases restored
ROLLING_BACK = "rolling_back"  # failed; restoring the previous releases now
ABORTING = "aborting"  # `conveyor abort` is restoring the previous releases
PAUSED = "paused"  # waits for `conveyor promote`, `resume` or `abort`
AWAITING_APPROVAL = "awaiting_approval"  # waits for `conveyor approve` (or `reject`)
REJECTED = "rejected"  # an approver said no, or the request expired: nothing changed
REFUSED = "refused"  # a check (policy, pre_deploy hook, migration lint) said no: nothing changed
UNFINISHED_STATUSES = (PENDING, RUNNING, ROLLING_BACK, ABORTING, PAUSED, AWAITING_APPROVAL)

# Control requests to the process running a deployment.
REQUEST_PAUSE = "pause"
REQUEST_ABORT = "abort"
REQUEST_PROMOTE = "promote"
REQUEST_PROMOTE_FULL = "promote_full"

# Step statuses.
STEP_RUNNING = "running"
STEP_DONE = "done"
STEP_FAILED = "failed"
STEP_PAUSED = "paused"  # the deployment paused in this step; it runs again on resume
STEP_SKIPPED = "skipped"  # passed over by `conveyor promote`
STEP_COMPLETE = (STEP_DONE, STEP_SKIPPED)


@dataclass(frozen=True)
class ReleaseRecord:
    """An immutable built release of one service."""

    id: str
    service: str
    path: str
    digest: str  # sha256 of the built tree
    source_digest: str  # sha256 of the source tree before build commands ran
    created_at: datetime
    built_by: str
    git_commit: str | None = None
    git_commit_time: datetime | None = None
    build_log: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentRecord:
    """One deployment of an environment (deploy, rollback, abort)."""

    id: str
    environment: str
    kind: str  # "deploy" | "rollback"
    status: str
    strategy: str
    releases: dict[str, str]  # service -> release id being deployed
    previous: dict[str, str]  # service -> release id that ran before
    user: str
    reason: str | None
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    plan: list[dict[str, Any]] = field(default_factory=list)  # serialized steps
    request: str | None = None  # pending control request (REQUEST_*)
    request_by: str | None = None


@dataclass(frozen=True)
class StepRecord:
    """Journal entry of one plan step."""

    deployment_id: str
    index: int
    kind: str
    description: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    attempt: int = 1


@dataclass(frozen=True)
class InstanceRecord:
    """An instance Conveyor started (and has not yet forgotten)."""

    name: str
    environment: str
    service: str
    release_id: str
    port: int
    state: str  # "starting" | "ready" | "serving" | "draining" | "stopped"
    created_at: datetime
    deployment_id: str | None = None
    warm_until: datetime | None = None  # kept warm (no traffic) until then


@dataclass(frozen=True)
class MeasurementRecordRow:
    """One journaled analysis snapshot (`conveyor explain`, `analyze --replay`)."""

    deployment_id: str
    step_index: int
    analysis: str
    run: int
    seq: int
    time: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class BackupRecord:
    """A database backup file and what is known about it."""

    id: str
    database: str
    engine: str  # "postgresql" | "mysql" | "sqlite"
    url: str  # with the password redacted
    path: str
    format: str
    size: int
    sha256: str
    created_at: datetime
    duration_s: float
    created_by: str
    tables: dict[str, int] = field(default_factory=dict)
    environment: str | None = None
    reason: str | None = None
    deployment_id: str | None = None
    server_version: str | None = None
    verified_at: datetime | None = None
    verify_mode: str | None = None
    verify_ok: bool | None = None
    verify_detail: str | None = None
    verify_duration_s: float | None = None


@dataclass(frozen=True)
class PipelineRunRecord:
    """One run of the pipeline: where, what came of each job."""

    id: str
    status: str  # "running" | "passed" | "failed"
    started_at: datetime
    user: str
    git_commit: str | None = None
    dirty: bool = False
    release_id: str | None = None
    finished_at: datetime | None = None
    jobs: dict[str, Any] = field(default_factory=dict)  # name -> JobResult.to_dict()


@dataclass(frozen=True)
class ApprovalRecord:
    """An approval or rejection of a deployment."""

    deployment_id: str
    user: str
    approve: bool
    at: datetime
    message: str = ""


@dataclass(frozen=True)
class NotificationRecord:
    """One delivery of a deployment event to one target."""

    target: str
    event: str
    status: str  # "delivered" | "failed"
    attempts: int
    at: datetime
    deployment_id: str | None = None
    environment: str | None = None
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LockRecord:
    """Who holds an environment's deploy lock."""

    environment: str
    holder: str  # user
    acquired_at: datetime
    deployment_id: str | None = None
    message: str | None = None
    pid: int | None = None
    hostname: str | None = None


@dataclass(frozen=True)
class EventRecord:
    """Something that happened, for the audit trail and `history`."""

    id: int
    time: datetime
    kind: str
    message: str
    environment: str | None = None
    deployment_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
