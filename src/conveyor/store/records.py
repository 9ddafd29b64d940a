"""Plain records the store returns: detached from any database session.

Each record is also the one definition of its table's data columns: the field
types and `Col` annotations are what `conveyor.store.columns` reads to build
the table, read rows and write them (see there). The Alembic migrations create
the same tables; a test compares them.
"""

# No `from __future__ import annotations` here: `conveyor.store.columns` reads the
# field types, and evaluated annotations cost `conveyor status` less than strings.
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from conveyor.store.columns import Col

# Column types a field's type alone does not give (a plain `str` is VARCHAR(255)).
Text = Annotated[str, Col(text=True)]
Str32 = Annotated[str, Col(length=32)]
Str64 = Annotated[str, Col(length=64)]
Str128 = Annotated[str, Col(length=128)]
Key = Annotated[str, Col(key=True)]
UserName = Annotated[str, Col(name="user_name")]  # "user" is reserved in PostgreSQL


def _row_counts(tables: dict[str, Any]) -> dict[str, int]:
    return {str(name): int(count) for name, count in tables.items()}


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
    path: Text
    digest: Str128  # sha256 of the built tree
    source_digest: Str128  # sha256 of the source tree before build commands ran
    created_at: datetime
    built_by: str
    git_commit: Str64 | None = None
    git_commit_time: datetime | None = None
    build_log: Text | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentRecord:
    """One deployment of an environment (deploy, rollback, abort)."""

    id: str
    environment: str
    kind: Str32  # "deploy" | "rollback"
    status: Str32
    strategy: Str64
    releases: dict[str, str]  # service -> release id being deployed
    previous: dict[str, str]  # service -> release id that ran before
    user: UserName
    reason: Text | None
    started_at: datetime
    finished_at: datetime | None = None
    error: Text | None = None
    plan: list[dict[str, Any]] = field(default_factory=list)  # serialized steps
    request: Str32 | None = None  # pending control request (REQUEST_*)
    request_by: str | None = None


@dataclass(frozen=True)
class StepRecord:
    """Journal entry of one plan step."""

    deployment_id: Key
    index: Annotated[int, Col(name="step_index", key=True, autoincrement=False)]
    kind: Str64
    description: Text
    status: Str32
    started_at: datetime
    finished_at: datetime | None = None
    error: Text | None = None
    attempt: int = 1


@dataclass(frozen=True)
class InstanceRecord:
    """An instance Conveyor started (and has not yet forgotten)."""

    name: Key
    environment: str
    service: str
    release_id: str
    port: int  # the port it listens on, on its host
    host: Annotated[
        str, Col(server_default="local")
    ]  # the name of the host it runs on ("local": the machine Conveyor runs on)
    address: str  # where the router and the checks reach it, "ip:port" (from its target)
    state: Str32  # "starting" | "ready" | "serving" | "draining" | "stopped"
    created_at: datetime
    deployment_id: str | None = None
    warm_until: datetime | None = None  # kept warm (no traffic) until then


@dataclass(frozen=True)
class AccessoryRecord:
    """An accessory of an environment that was started once: where it runs, kept so that
    its port stays the same across starts (and instances never take it)."""

    environment: Key
    name: Key
    host: str  # the name of the host it runs on ("local": the machine Conveyor runs on)
    port: int
    address: str  # where services reach it, "ip:port" (from its target)
    config_digest: Str64  # of what it was last started with (secrets masked)
    started_at: datetime


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
    engine: Str32  # "postgresql" | "mysql" | "sqlite"
    url: Text  # with the password redacted
    path: Text
    format: Str64
    size: Annotated[int, Col(big=True)]  # bytes: backups exceed 2 GiB
    sha256: Str64
    created_at: datetime
    duration_s: float
    created_by: str
    tables: Annotated[dict[str, int], Col(decode=_row_counts)] = field(default_factory=dict)
    environment: str | None = None
    reason: Text | None = None
    deployment_id: str | None = None
    server_version: str | None = None
    verified_at: datetime | None = None
    verify_mode: Str32 | None = None
    verify_ok: bool | None = None
    verify_detail: Text | None = None
    verify_duration_s: float | None = None


@dataclass(frozen=True)
class PipelineRunRecord:
    """One run of the pipeline: where, what came of each job."""

    id: str
    status: Str32  # "running" | "passed" | "failed"
    started_at: datetime
    user: UserName
    git_commit: Str64 | None = None
    dirty: bool = False
    release_id: str | None = None
    finished_at: datetime | None = None
    jobs: dict[str, Any] = field(default_factory=dict)  # name -> JobResult.to_dict()


@dataclass(frozen=True)
class ApprovalRecord:
    """An approval or rejection of a deployment."""

    deployment_id: str
    user: UserName
    approve: bool
    at: datetime
    message: Annotated[str, Col(text=True, nullable=True)] = ""


@dataclass(frozen=True)
class NotificationRecord:
    """One delivery of a deployment event to one target."""

    target: str
    event: Str64
    status: Str32  # "delivered" | "failed"
    attempts: int
    at: datetime
    deployment_id: str | None = None
    environment: str | None = None
    error: Text | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LockRecord:
    """Who holds an environment's deploy lock."""

    environment: Key
    holder: str  # user
    acquired_at: datetime
    deployment_id: str | None = None
    message: Text | None = None
    pid: int | None = None
    hostname: str | None = None


@dataclass(frozen=True)
class EventRecord:
    """Something that happened, for the audit trail and `history`."""

    id: Annotated[int, Col(key=True, autoincrement=True)]
    time: datetime
    kind: Str64
    message: Text
    environment: str | None = None
    deployment_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


# Job run statuses (`JobRunRecord.status`).
JOB_RUNNING = "running"
JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"
JOB_SKIPPED = "skipped"  # due while the previous run was still going


@dataclass(frozen=True)
class JobRunRecord:
    """One run of a scheduled job (`jobs:`), or one skipped because the last still ran."""

    id: Annotated[int, Col(key=True, autoincrement=True)]
    environment: str
    job: str
    status: Str32  # running | succeeded | failed | skipped
    trigger: Str32  # schedule | manual
    started_at: datetime
    scheduled_at: datetime | None = None  # when the schedule had it due
    finished_at: datetime | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    service: str | None = None
    release_id: str | None = None
    host: str | None = None  # where the command ran ("local": this machine)
    pid: int | None = None  # the process that runs it (stale when gone)
    hostname: str | None = None  # the machine of that process
    detail: Text | None = None  # why it failed or was skipped; a backup's id
    output: Text | None = None  # the output's last lines, secrets masked


@dataclass(frozen=True)
class AlertRecord:
    """Where an alert of `monitors:` is (`conveyor.monitors.state`), kept across the agent's
    restarts: a firing alert is not announced again."""

    environment: Key
    name: Key  # the rule's or the probe's
    kind: Str32  # rule | probe
    state: Str32  # ok | pending | firing
    updated_at: datetime
    expression: Text = ""  # what fires it: "error_rate > 5% for 5m"
    since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    detail: Text | None = None  # the reading that moved it last
    deployment_id: str | None = None  # what served when it last fired


# Roles of API tokens (`conveyor tokens`, `conveyor.server.access`).
ROLES = ("viewer", "deployer", "approver", "admin")


@dataclass(frozen=True)
class TokenRecord:
    """An API token of `conveyor server`: who it is, what it may do; only its hash is kept."""

    name: Key  # the identity: the user name in the history, approvals and the audit
    role: Str32  # one of ROLES
    token_hash: Str64  # sha256 hex of the token
    created_at: datetime
    created_by: str
    environments: list[str] = field(default_factory=list)  # empty: every environment
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass(frozen=True)
class AuditRecord:
    """A request to `conveyor server` that changes something (or tried to), and its answer."""

    id: Annotated[int, Col(key=True, autoincrement=True)]
    time: datetime
    token: str  # the token's name
    role: Str32
    method: Str32
    path: Text
    status: int  # the HTTP status of the answer
    outcome: Text  # "accepted", "deployment 2026...: succeeded", or the error
    environment: str | None = None
    deployment_id: str | None = None
