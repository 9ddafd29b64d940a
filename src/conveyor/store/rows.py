"""Table rows to records: one mapping shared by `Store` and the status `SnapshotReader`.

Each function takes a row as a mapping of column name to value, with times
already as aware datetimes and JSON columns already decoded; the two readers
differ only in how they get there (SQLAlchemy types, or `sqlite3` plus the
decoding in `snapshot`). The mapping itself comes from the records' fields
(`conveyor.store.columns`). No SQLAlchemy import here.
"""

from __future__ import annotations

from conveyor.store import records
from conveyor.store.columns import Columns, reader

__all__ = [
    "Columns",
    "accessory",
    "alert",
    "approval",
    "audit",
    "backup",
    "deployment",
    "event",
    "instance",
    "job_run",
    "lock",
    "measurement",
    "notification",
    "pipeline_run",
    "release",
    "step",
    "token",
]

release = reader(records.ReleaseRecord)
deployment = reader(records.DeploymentRecord)
step = reader(records.StepRecord)
instance = reader(records.InstanceRecord)
accessory = reader(records.AccessoryRecord)
lock = reader(records.LockRecord)
event = reader(records.EventRecord)
backup = reader(records.BackupRecord)
pipeline_run = reader(records.PipelineRunRecord)
measurement = reader(records.MeasurementRecordRow)
approval = reader(records.ApprovalRecord)
notification = reader(records.NotificationRecord)
job_run = reader(records.JobRunRecord)
token = reader(records.TokenRecord)
audit = reader(records.AuditRecord)
alert = reader(records.AlertRecord)
