"""A read-only view of a SQLite state database, through the standard library.

`conveyor status` only reads a handful of rows; importing SQLAlchemy for that
would cost more than everything else it does. `SnapshotReader` answers the
few read queries status needs with `sqlite3`, opened read-only
(`file:...?mode=ro`), inside one read transaction so that all answers come
from the same moment. It returns the same records as `Store` and orders rows
the same way; the table and column names are those of `conveyor.store.tables`
(a test checks them against it). It never migrates: a database that is not at
`HEAD_REVISION` is left to `open_store`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

from conveyor.store import columns, rows
from conveyor.store.integrity import check_file
from conveyor.store.records import (
    UNFINISHED_STATUSES,
    AccessoryRecord,
    AlertRecord,
    DeploymentRecord,
    InstanceRecord,
    LockRecord,
    StepRecord,
)
from conveyor.store.revision import HEAD_REVISION

__all__ = ["COLUMNS", "SnapshotReader", "SnapshotUnavailable"]

# The columns read, by table: those of the records (`conveyor.store.columns`).
_DEPLOYMENT = columns.names(DeploymentRecord)
_STEP = columns.names(StepRecord)
_INSTANCE = columns.names(InstanceRecord)
_LOCK = columns.names(LockRecord)
_ACCESSORY = columns.names(AccessoryRecord)
_ALERT = columns.names(AlertRecord)
_CURRENT = ("environment", "service", "release_id")

COLUMNS: dict[str, tuple[str, ...]] = {
    "deployments": (*_DEPLOYMENT, "seq"),
    "steps": _STEP,
    "instances": _INSTANCE,
    "locks": _LOCK,
    "current_releases": _CURRENT,
    "accessories": _ACCESSORY,
    "alerts": _ALERT,
}
"""Every table and column this module refers to."""

T = TypeVar("T")
Row = tuple[Any, ...]

# Readers of a WAL database wait only while another process recovers the WAL.
_BUSY_TIMEOUT_S = 30.0


class SnapshotUnavailable(Exception):
    """The database could not be read this way; use `open_store` instead."""


def _select(table: str, names: tuple[str, ...]) -> str:
    return f"SELECT {', '.join(names)} FROM {table}"  # noqa: S608 - constant names only


def _time(value: Any) -> datetime | None:
    """A stored time as the store returns it: timezone-aware UTC."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(parsed, datetime):
        raise TypeError(f"expected a time from the database, got {value!r}")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _required_time(value: Any) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise TypeError("a required time is NULL in the state database")
    return parsed


def _json(value: Any) -> Any:
    return None if value is None else json.loads(value)


def _decoder(record: type) -> Callable[[Row], dict[str, Any]]:
    """A row of `record`'s columns as the shared converters want it: aware times, decoded JSON."""
    decode: list[Callable[[Any], Any]] = []
    for stored in columns.stored(record):
        if stored.kind == "time":
            decode.append(_time if stored.nullable else _required_time)
        elif stored.kind == "json":
            decode.append(_json)
        else:
            decode.append(_same)
    names = columns.names(record)

    def convert(row: Row) -> dict[str, Any]:
        return {name: f(value) for name, f, value in zip(names, decode, row, strict=True)}

    return convert


def _same(value: Any) -> Any:
    return value


def _reader(record: type[T], read: Callable[[columns.Columns], T]) -> Callable[[Row], T]:
    decode = _decoder(record)
    return lambda row: read(decode(row))


_deployment = _reader(DeploymentRecord, rows.deployment)
_step = _reader(StepRecord, rows.step)
_instance = _reader(InstanceRecord, rows.instance)
_accessory = _reader(AccessoryRecord, rows.accessory)
_alert = _reader(AlertRecord, rows.alert)
_lock = _reader(LockRecord, rows.lock)


class SnapshotReader:
    """Read-only queries on a SQLite state database, all from one snapshot.

    Methods mirror those of `Store` (same arguments, records and order). A
    database error raises `SnapshotUnavailable`.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        """Wrap a connection already inside a read transaction; use `open`."""
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> SnapshotReader | None:
        """A reader of the database file `path`; None when it is missing or not at the head.

        None means: open it with `open_store`, which creates or migrates it. Raises
        `StateCorruptError` for a file that is empty or not SQLite, or is missing while
        its last good copy exists.
        """
        check_file(path)
        if not path.is_file():
            return None
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
        except sqlite3.Error:
            return None
        try:
            conn.execute("BEGIN")
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except (sqlite3.Error, UnicodeDecodeError):
            # Damage included (its message may not even decode): `open_store` reports it.
            conn.close()
            return None
        if row is None or row[0] != HEAD_REVISION:
            conn.close()
            return None
        return cls(conn, path)

    def close(self) -> None:
        """End the read transaction and close the connection."""
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error:
            pass
        finally:
            self._conn.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SnapshotReader({str(self.path)!r})"

    def _read(self, sql: str, params: tuple[Any, ...], convert: Callable[[Row], T]) -> list[T]:
        try:
            return [convert(row) for row in self._conn.execute(sql, params).fetchall()]
        except (sqlite3.Error, ValueError, TypeError) as exc:
            # ValueError, TypeError: a value the store would not have written (bad time, JSON),
            # or text that does not decode (UnicodeDecodeError): damage `open_store` reports.
            raise SnapshotUnavailable(f"{self.path}: {exc}") from exc

    def current_releases(self, environment: str) -> dict[str, str]:
        """Service -> release id currently deployed in `environment`."""
        rows = self._read(
            "SELECT service, release_id FROM current_releases WHERE environment = ? "
            "ORDER BY service",
            (environment,),
            tuple,
        )
        return dict(rows)

    def get_lock(self, environment: str) -> LockRecord | None:
        """Who holds the lock of `environment`, or None."""
        rows = self._read(_select("locks", _LOCK) + " WHERE environment = ?", (environment,), _lock)
        return rows[0] if rows else None

    def unfinished_deployment(self, environment: str) -> DeploymentRecord | None:
        """The newest deployment of `environment` still pending or running, if any."""
        marks = ", ".join("?" for _ in UNFINISHED_STATUSES)
        rows = self._read(
            _select("deployments", _DEPLOYMENT) + f" WHERE environment = ? AND status IN ({marks})"
            " ORDER BY started_at DESC, seq DESC LIMIT 1",
            (environment, *UNFINISHED_STATUSES),
            _deployment,
        )
        return rows[0] if rows else None

    def list_deployments(
        self, environment: str | None = None, limit: int | None = None
    ) -> list[DeploymentRecord]:
        """Deployments (of one environment, or all), newest first."""
        sql = _select("deployments", _DEPLOYMENT)
        params: list[Any] = []
        if environment is not None:
            sql += " WHERE environment = ?"
            params.append(environment)
        sql += " ORDER BY started_at DESC, seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._read(sql, tuple(params), _deployment)

    def list_steps(self, deployment_id: str) -> list[StepRecord]:
        """The journal of a deployment, by step index."""
        return self._read(
            _select("steps", _STEP) + " WHERE deployment_id = ? ORDER BY step_index",
            (deployment_id,),
            _step,
        )

    def list_instances(
        self, environment: str | None = None, service: str | None = None
    ) -> list[InstanceRecord]:
        """Instances, oldest first (then by name)."""
        sql = _select("instances", _INSTANCE)
        where: list[str] = []
        params: list[Any] = []
        if environment is not None:
            where.append("environment = ?")
            params.append(environment)
        if service is not None:
            where.append("service = ?")
            params.append(service)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, name"
        return self._read(sql, tuple(params), _instance)

    def list_accessories(self, environment: str | None = None) -> list[AccessoryRecord]:
        """Accessories started once, by environment and name."""
        sql = _select("accessories", _ACCESSORY)
        params: tuple[Any, ...] = ()
        if environment is not None:
            sql += " WHERE environment = ?"
            params = (environment,)
        return self._read(sql + " ORDER BY environment, name", params, _accessory)

    def list_alerts(self, environment: str | None = None) -> list[AlertRecord]:
        """The alerts of monitors, by environment and name."""
        sql = _select("alerts", _ALERT)
        params: tuple[Any, ...] = ()
        if environment is not None:
            sql += " WHERE environment = ?"
            params = (environment,)
        return self._read(sql + " ORDER BY environment, name", params, _alert)
