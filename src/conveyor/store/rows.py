"""Table rows to records: one mapping shared by `Store` and the status `SnapshotReader`.

Each function takes a row as a mapping of column name to value, with times
already as aware datetimes and JSON columns already decoded; the two readers
differ only in how they get there (SQLAlchemy types, or `sqlite3` plus
`decode_times`/`decode_json`). No SQLAlchemy import here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.store.records import (
    BackupRecord,
    DeploymentRecord,
    EventRecord,
    InstanceRecord,
    LockRecord,
    PipelineRunRecord,
    ReleaseRecord,
    StepRecord,
)

Columns = Mapping[Any, Any]  # SQLAlchemy RowMapping or a dict


def release(m: Columns) -> ReleaseRecord:
    return ReleaseRecord(
        id=m["id"],
        service=m["service"],
        path=m["path"],
        digest=m["digest"],
        source_digest=m["source_digest"],
        created_at=m["created_at"],
        built_by=m["built_by"],
        git_commit=m["git_commit"],
        git_commit_time=m["git_commit_time"],
        build_log=m["build_log"],
        manifest=dict(m["manifest"] or {}),
    )


def deployment(m: Columns) -> DeploymentRecord:
    return DeploymentRecord(
        id=m["id"],
        environment=m["environment"],
        kind=m["kind"],
        status=m["status"],
        strategy=m["strategy"],
        releases=dict(m["releases"] or {}),
        previous=dict(m["previous"] or {}),
        user=m["user_name"],
        reason=m["reason"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        error=m["error"],
        plan=list(m["plan"] or []),
        request=m.get("request"),
        request_by=m.get("request_by"),
    )


def step(m: Columns) -> StepRecord:
    return StepRecord(
        deployment_id=m["deployment_id"],
        index=m["step_index"],
        kind=m["kind"],
        description=m["description"],
        status=m["status"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        error=m["error"],
        attempt=m["attempt"],
    )


def instance(m: Columns) -> InstanceRecord:
    return InstanceRecord(
        name=m["name"],
        environment=m["environment"],
        service=m["service"],
        release_id=m["release_id"],
        port=m["port"],
        state=m["state"],
        created_at=m["created_at"],
        deployment_id=m["deployment_id"],
        warm_until=m.get("warm_until"),
    )


def lock(m: Columns) -> LockRecord:
    return LockRecord(
        environment=m["environment"],
        holder=m["holder"],
        acquired_at=m["acquired_at"],
        deployment_id=m["deployment_id"],
        message=m["message"],
        pid=m["pid"],
        hostname=m["hostname"],
    )


def event(m: Columns) -> EventRecord:
    return EventRecord(
        id=m["id"],
        time=m["time"],
        kind=m["kind"],
        message=m["message"],
        environment=m["environment"],
        deployment_id=m["deployment_id"],
        data=dict(m["data"] or {}),
    )


def backup(m: Columns) -> BackupRecord:
    ok = m["verify_ok"]
    return BackupRecord(
        id=m["id"],
        database=m["database"],
        engine=m["engine"],
        url=m["url"],
        path=m["path"],
        format=m["format"],
        size=int(m["size"]),
        sha256=m["sha256"],
        created_at=m["created_at"],
        duration_s=float(m["duration_s"]),
        created_by=m["created_by"],
        tables={str(k): int(v) for k, v in dict(m["tables"] or {}).items()},
        environment=m["environment"],
        reason=m["reason"],
        deployment_id=m["deployment_id"],
        server_version=m["server_version"],
        verified_at=m["verified_at"],
        verify_mode=m["verify_mode"],
        verify_ok=None if ok is None else bool(ok),
        verify_detail=m["verify_detail"],
        verify_duration_s=m["verify_duration_s"],
    )


def pipeline_run(m: Columns) -> PipelineRunRecord:
    return PipelineRunRecord(
        id=m["id"],
        status=m["status"],
        started_at=m["started_at"],
        user=m["user_name"],
        git_commit=m["git_commit"],
        dirty=bool(m["dirty"]),
        release_id=m["release_id"],
        finished_at=m["finished_at"],
        jobs=dict(m["jobs"] or {}),
    )
