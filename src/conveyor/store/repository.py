"""The state store: releases, deployments, the step journal, instances, locks, events.

Every method is one short transaction and returns plain records from
`conveyor.store.records`, detached from any connection. Database failures
surface as `StateError` naming the (password-redacted) URL; a programming
mistake such as a naive datetime stays a `ValueError`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

from sqlalchemy import Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.sql.dml import Insert

from conveyor.errors import ConveyorError, LockHeldError, StateError, UsageError
from conveyor.redaction import redact_url
from conveyor.store import rows, space
from conveyor.store import tables as t
from conveyor.store.columns import columns_of
from conveyor.store.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    corruption_error,
    create_store_engine,
    describe_error,
    ensure_schema,
    sqlite_file,
    transaction,
)
from conveyor.store.records import (
    STEP_RUNNING,
    SUCCEEDED,
    UNFINISHED_STATUSES,
    AccessoryRecord,
    AlertRecord,
    ApprovalRecord,
    AuditRecord,
    BackupRecord,
    DeploymentRecord,
    EventRecord,
    InstanceRecord,
    JobRunRecord,
    LockRecord,
    MeasurementRecordRow,
    NotificationRecord,
    PipelineRunRecord,
    ReleaseRecord,
    StepRecord,
    TokenRecord,
)

LOCK_HINT = (
    'wait for it to finish, or run "conveyor lock release {environment}" if you are sure it '
    "is stale"
)


class EnvironmentLockedError(LockHeldError):
    """`LockHeldError` raised by `Store.acquire_lock`; `.lock` is the lock that is held."""

    def __init__(self, lock: LockRecord) -> None:
        self.lock = lock
        super().__init__(describe_lock(lock), hint=LOCK_HINT.format(environment=lock.environment))


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def describe_lock(lock: LockRecord) -> str:
    """A sentence saying who holds `lock`, since when, for which deployment and why."""
    who = lock.holder
    where = [f"pid {lock.pid}" if lock.pid is not None else "", lock.hostname or ""]
    if any(where):
        who += " (" + " on ".join(part for part in where if part) + ")"
    text = f'environment "{lock.environment}" is locked by {who} since {_iso(lock.acquired_at)}'
    if lock.deployment_id:
        text += f" for deployment {lock.deployment_id}"
    if lock.message:
        text += f": {lock.message}"
    return text


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = _Unset.UNSET


def _now() -> datetime:
    return datetime.now(UTC)


def _release(row: Row[Any]) -> ReleaseRecord:
    return rows.release(row._mapping)


def _deployment(row: Row[Any]) -> DeploymentRecord:
    return rows.deployment(row._mapping)


def _step(row: Row[Any]) -> StepRecord:
    return rows.step(row._mapping)


def _instance(row: Row[Any]) -> InstanceRecord:
    return rows.instance(row._mapping)


def _lock(row: Row[Any]) -> LockRecord:
    return rows.lock(row._mapping)


def _event(row: Row[Any]) -> EventRecord:
    return rows.event(row._mapping)


class Store:
    """Conveyor's state in SQLite or PostgreSQL. Thread-safe; use `open_store`."""

    def __init__(self, engine: Engine, url: str) -> None:
        """Wrap an engine whose database is already at the schema head."""
        self._engine = engine
        self._url = url  # kept to scrub its password from driver messages
        self.url = redact_url(url)
        """The state URL with any password replaced by `***`."""
        self.state_file = sqlite_file(engine)
        """The SQLite file of the state; None for PostgreSQL (its server keeps its disk)."""
        self.notes: list[str] = []
        """Warnings for the user gathered while writing (the disk ran full)."""

    @property
    def dialect(self) -> str:
        """`"sqlite"` or `"postgresql"`."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Close every pooled connection. The store must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # -- plumbing -------------------------------------------------------------

    @contextmanager
    def _tx(self, what: str, *, write: bool = False) -> Iterator[Connection]:
        if write:
            self._keep_writable()
        try:
            with transaction(self._engine, write=write) as conn:
                yield conn
        except ConveyorError:
            raise
        except UnicodeDecodeError as exc:
            raise self._error(what, exc) from None
        except StatementError as exc:
            # A bad value from the caller (e.g. a naive datetime); not SQLite's garbled text.
            origin = exc.orig
            garbled = isinstance(origin, UnicodeDecodeError) or isinstance(exc, DBAPIError)
            if isinstance(origin, ValueError | TypeError) and not garbled:
                raise origin from None
            raise self._error(what, exc) from None
        except SQLAlchemyError as exc:
            raise self._error(what, exc) from None

    def _keep_writable(self) -> None:
        """Give the reserve back to the filesystem when it is nearly full, so that this
        write (and those that end a deployment and free its lock) still fit."""
        path = self.state_file
        if path is None or space.free_bytes(path.parent) >= space.LOW_WATER_BYTES:
            return
        if space.release_reserve(path):
            self.notes.append(
                f"the disk holding {path.parent} is full: Conveyor used its reserve to record "
                f"this command; {space.PRUNE_HINT.format(home=path.parent)} before the next "
                "build or deploy"
            )

    def _error(self, what: str, exc: SQLAlchemyError | UnicodeDecodeError) -> StateError:
        corrupt = corruption_error(self._engine, exc)
        if corrupt is not None:
            return corrupt
        path = self.state_file
        if path is not None and space.is_disk_full(exc):
            space.release_reserve(path)  # so that ending the deployment and its lock still fit
            error = space.disk_full_error(path.parent, f"{what} (the state)", path.parent)
            return StateError(error.message, hint=error.hint)
        reason = describe_error(exc, self._url)
        if "database is locked" in reason:
            hint = (
                f"another conveyor process kept the state database busy for more than "
                f"{SQLITE_BUSY_TIMEOUT_MS // 1000}s; run the command again"
            )
        else:
            hint = f"check that the state database {self.url} is reachable and not full"
        return StateError(f"state store {self.url}: cannot {what}: {reason}", hint=hint)

    def _insert(self, table: Table) -> Any:
        """INSERT supporting ON CONFLICT for this backend (both spell it the same)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def _upsert(
        self,
        table: Table,
        values: Mapping[str, Any],
        keys: Sequence[str],
        extra: Mapping[str, Any] | None = None,
    ) -> Insert:
        """INSERT `values`, or on a key conflict overwrite the other columns (and `extra`)."""
        stmt = self._insert(table).values(**values)
        changes: dict[str, Any] = {name: stmt.excluded[name] for name in values if name not in keys}
        changes.update(extra or {})
        result: Insert = stmt.on_conflict_do_update(index_elements=list(keys), set_=changes)
        return result

    # -- releases -------------------------------------------------------------

    def add_release(self, r: ReleaseRecord) -> None:
        """Record a built release. Refused when the service already has that id."""
        with self._tx(f"add release {r.id} of service {r.service}", write=True) as conn:
            exists = conn.execute(
                select(t.releases.c.seq).where(
                    t.releases.c.service == r.service, t.releases.c.id == r.id
                )
            ).first()
            if exists is not None:
                raise StateError(
                    f"release {r.id} of service {r.service} is already recorded",
                    hint="releases are immutable: build a new release instead",
                )
            conn.execute(insert(t.releases).values(columns_of(r)))

    def get_release(self, service: str, release_id: str) -> ReleaseRecord | None:
        """The release `release_id` of `service`, or None."""
        with self._tx(f"read release {release_id} of service {service}") as conn:
            row = conn.execute(
                select(t.releases).where(
                    t.releases.c.service == service, t.releases.c.id == release_id
                )
            ).first()
        return None if row is None else _release(row)

    def find_release_by_source(self, service: str, source_digest: str) -> ReleaseRecord | None:
        """The newest release of `service` built from a source tree with this digest."""
        with self._tx(f"look up releases of service {service}") as conn:
            row = conn.execute(
                select(t.releases)
                .where(t.releases.c.service == service, t.releases.c.source_digest == source_digest)
                .order_by(t.releases.c.created_at.desc(), t.releases.c.seq.desc())
                .limit(1)
            ).first()
        return None if row is None else _release(row)

    def list_releases(self, service: str | None = None) -> list[ReleaseRecord]:
        """Releases (of one service, or all), newest first; ties newest-inserted first."""
        query = select(t.releases).order_by(t.releases.c.created_at.desc(), t.releases.c.seq.desc())
        if service is not None:
            query = query.where(t.releases.c.service == service)
        with self._tx("list releases") as conn:
            return [_release(row) for row in conn.execute(query)]

    def delete_release(self, service: str, release_id: str) -> bool:
        """Forget a release; True when there was one."""
        with self._tx(f"delete release {release_id} of service {service}", write=True) as conn:
            result = conn.execute(
                delete(t.releases).where(
                    t.releases.c.service == service, t.releases.c.id == release_id
                )
            )
            return result.rowcount > 0

    # -- deployments ----------------------------------------------------------

    def create_deployment(self, d: DeploymentRecord) -> None:
        """Record a new deployment. Refused when the id is taken."""
        with self._tx(f"create deployment {d.id}", write=True) as conn:
            exists = conn.execute(
                select(t.deployments.c.seq).where(t.deployments.c.id == d.id)
            ).first()
            if exists is not None:
                raise StateError(
                    f"deployment {d.id} is already recorded",
                    hint="deployment ids must be unique; this is a bug in the caller",
                )
            conn.execute(insert(t.deployments).values(columns_of(d)))

    def get_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        """The deployment with this id, or None."""
        with self._tx(f"read deployment {deployment_id}") as conn:
            row = conn.execute(
                select(t.deployments).where(t.deployments.c.id == deployment_id)
            ).first()
        return None if row is None else _deployment(row)

    def list_deployments(
        self, environment: str | None = None, limit: int | None = None
    ) -> list[DeploymentRecord]:
        """Deployments (of one environment, or all), newest first."""
        query = select(t.deployments).order_by(
            t.deployments.c.started_at.desc(), t.deployments.c.seq.desc()
        )
        if environment is not None:
            query = query.where(t.deployments.c.environment == environment)
        if limit is not None:
            query = query.limit(limit)
        with self._tx("list deployments") as conn:
            return [_deployment(row) for row in conn.execute(query)]

    def update_deployment(
        self,
        deployment_id: str,
        *,
        status: str | None = None,
        error: str | None = None,
        finished: bool = False,
        plan: list[dict[str, Any]] | None = None,
    ) -> DeploymentRecord:
        """Change a deployment's status, error or plan; `finished=True` stamps finished_at.

        Arguments left as None are not changed. Returns the updated record.
        """
        changes: dict[str, Any] = {}
        if status is not None:
            changes["status"] = status
        if error is not None:
            changes["error"] = error
        if plan is not None:
            changes["plan"] = list(plan)
        if finished:
            changes["finished_at"] = _now()
        with self._tx(f"update deployment {deployment_id}", write=True) as conn:
            where = t.deployments.c.id == deployment_id
            if changes:
                conn.execute(update(t.deployments).where(where).values(**changes))
            row = conn.execute(select(t.deployments).where(where)).first()
            if row is None:
                raise StateError(
                    f"deployment {deployment_id} is not in the state store",
                    hint='list deployments with "conveyor history"',
                )
        return _deployment(row)

    def set_request(self, deployment_id: str, request: str | None, by: str | None = None) -> bool:
        """Leave (or clear, with None) a control request for the deployment's process.

        False when the deployment is finished or unknown: there is nobody to ask.
        """
        d = t.deployments
        with self._tx(f"send {request or 'no'} request to {deployment_id}", write=True) as conn:
            result = conn.execute(
                update(d)
                .where(d.c.id == deployment_id, d.c.status.in_(UNFINISHED_STATUSES))
                .values(request=request, request_by=by if request else None)
            )
            return result.rowcount > 0

    def get_request(self, deployment_id: str) -> tuple[str | None, str | None]:
        """The pending control request of a deployment and who sent it."""
        d = t.deployments
        with self._tx(f"read the requests of {deployment_id}") as conn:
            row = conn.execute(
                select(d.c.request, d.c.request_by).where(d.c.id == deployment_id)
            ).first()
        return (None, None) if row is None else (row.request, row.request_by)

    def unfinished_deployment(self, environment: str) -> DeploymentRecord | None:
        """The newest deployment of `environment` still pending or running, if any."""
        with self._tx(f"look up unfinished deployments of {environment}") as conn:
            row = conn.execute(
                select(t.deployments)
                .where(
                    t.deployments.c.environment == environment,
                    t.deployments.c.status.in_(UNFINISHED_STATUSES),
                )
                .order_by(t.deployments.c.started_at.desc(), t.deployments.c.seq.desc())
                .limit(1)
            ).first()
        return None if row is None else _deployment(row)

    def last_successful(
        self, environment: str, before_id: str | None = None
    ) -> DeploymentRecord | None:
        """The newest succeeded deployment of `environment`.

        With `before_id`, only deployments older than that one count (the
        target of a rollback from it).
        """
        d = t.deployments
        query = (
            select(d)
            .where(d.c.environment == environment, d.c.status == SUCCEEDED)
            .order_by(d.c.started_at.desc(), d.c.seq.desc())
            .limit(1)
        )
        with self._tx(f"look up the last successful deployment of {environment}") as conn:
            if before_id is not None:
                pivot = conn.execute(
                    select(d.c.started_at, d.c.seq).where(d.c.id == before_id)
                ).first()
                if pivot is None:
                    raise StateError(
                        f"deployment {before_id} is not in the state store",
                        hint='list deployments with "conveyor history"',
                    )
                query = query.where(
                    or_(
                        d.c.started_at < pivot.started_at,
                        and_(d.c.started_at == pivot.started_at, d.c.seq < pivot.seq),
                    )
                )
            row = conn.execute(query).first()
        return None if row is None else _deployment(row)

    # -- journal --------------------------------------------------------------

    def step_started(
        self, deployment_id: str, index: int, kind: str, description: str
    ) -> StepRecord:
        """Journal that step `index` starts; a retried step gets `attempt` + 1."""
        s = t.steps
        started = StepRecord(
            deployment_id=deployment_id,
            index=index,
            kind=kind,
            description=description,
            status=STEP_RUNNING,
            started_at=_now(),
        )
        stmt = self._upsert(
            s,
            columns_of(started),
            keys=("deployment_id", "step_index"),
            extra={"attempt": s.c.attempt + 1},
        ).returning(*s.c)
        with self._tx(f"journal step {index} of deployment {deployment_id}", write=True) as conn:
            row = conn.execute(stmt).one()
        return _step(row)

    def step_finished(
        self, deployment_id: str, index: int, status: str, error: str | None = None
    ) -> StepRecord:
        """Journal the outcome (`done` or `failed`) of step `index`."""
        s = t.steps
        with self._tx(f"journal step {index} of deployment {deployment_id}", write=True) as conn:
            row = conn.execute(
                update(s)
                .where(s.c.deployment_id == deployment_id, s.c.step_index == index)
                .values(status=status, error=error, finished_at=_now())
                .returning(*s.c)
            ).first()
            if row is None:
                raise StateError(
                    f"step {index} of deployment {deployment_id} was never journalled as started",
                    hint="call step_started before step_finished; this is a bug in the caller",
                )
        return _step(row)

    def list_steps(self, deployment_id: str) -> list[StepRecord]:
        """The journal of a deployment, by step index."""
        with self._tx(f"read the journal of deployment {deployment_id}") as conn:
            rows = conn.execute(
                select(t.steps)
                .where(t.steps.c.deployment_id == deployment_id)
                .order_by(t.steps.c.step_index)
            )
            return [_step(row) for row in rows]

    # -- instances ------------------------------------------------------------

    def upsert_instance(self, r: InstanceRecord) -> None:
        """Record an instance, replacing what was known about one of the same name."""
        stmt = self._upsert(t.instances, columns_of(r), keys=("name",))
        with self._tx(f"record instance {r.name}", write=True) as conn:
            conn.execute(stmt)

    def set_instance_state(self, name: str, state: str, warm_until: datetime | None = None) -> bool:
        """Change an instance's state (and its rollback window's end, cleared when None).

        False when the instance is unknown.
        """
        with self._tx(f"set the state of instance {name}", write=True) as conn:
            result = conn.execute(
                update(t.instances)
                .where(t.instances.c.name == name)
                .values(state=state, warm_until=warm_until)
            )
            return result.rowcount > 0

    def get_instance(self, name: str) -> InstanceRecord | None:
        """The instance called `name`, or None."""
        with self._tx(f"read instance {name}") as conn:
            row = conn.execute(select(t.instances).where(t.instances.c.name == name)).first()
        return None if row is None else _instance(row)

    def list_instances(
        self, environment: str | None = None, service: str | None = None
    ) -> list[InstanceRecord]:
        """Instances, oldest first (then by name)."""
        query = select(t.instances).order_by(t.instances.c.created_at, t.instances.c.name)
        if environment is not None:
            query = query.where(t.instances.c.environment == environment)
        if service is not None:
            query = query.where(t.instances.c.service == service)
        with self._tx("list instances") as conn:
            return [_instance(row) for row in conn.execute(query)]

    def delete_instance(self, name: str) -> bool:
        """Forget an instance; True when there was one."""
        with self._tx(f"delete instance {name}", write=True) as conn:
            result = conn.execute(delete(t.instances).where(t.instances.c.name == name))
            return result.rowcount > 0

    # -- accessories ----------------------------------------------------------

    def upsert_accessory(self, r: AccessoryRecord) -> None:
        """Record where an accessory of an environment runs (replacing what was known)."""
        stmt = self._upsert(t.accessories, columns_of(r), keys=("environment", "name"))
        with self._tx(f"record accessory {r.name} of {r.environment}", write=True) as conn:
            conn.execute(stmt)

    def get_accessory(self, environment: str, name: str) -> AccessoryRecord | None:
        """The accessory `name` of `environment`, or None when it was never started."""
        query = select(t.accessories).where(
            t.accessories.c.environment == environment, t.accessories.c.name == name
        )
        with self._tx(f"read accessory {name} of {environment}") as conn:
            row = conn.execute(query).first()
        return None if row is None else rows.accessory(row._mapping)

    def list_accessories(self, environment: str | None = None) -> list[AccessoryRecord]:
        """Accessories started once, by environment and name."""
        query = select(t.accessories).order_by(t.accessories.c.environment, t.accessories.c.name)
        if environment is not None:
            query = query.where(t.accessories.c.environment == environment)
        with self._tx("list accessories") as conn:
            return [rows.accessory(row._mapping) for row in conn.execute(query)]

    # -- current releases -----------------------------------------------------

    def set_current(
        self, environment: str, service: str, release_id: str, deployment_id: str | None
    ) -> None:
        """Record that `service` in `environment` now runs `release_id`."""
        stmt = self._upsert(
            t.current_releases,
            {
                "environment": environment,
                "service": service,
                "release_id": release_id,
                "deployment_id": deployment_id,
                "updated_at": _now(),
            },
            keys=("environment", "service"),
        )
        with self._tx(f"set the current release of {service} in {environment}", write=True) as conn:
            conn.execute(stmt)

    def clear_current(self, environment: str, service: str) -> bool:
        """Record that `service` no longer runs in `environment` (after `down`)."""
        c = t.current_releases
        what = f"clear the current release of {service} in {environment}"
        with self._tx(what, write=True) as conn:
            result = conn.execute(
                delete(c).where(c.c.environment == environment, c.c.service == service)
            )
            return bool(result.rowcount)

    def current_releases(self, environment: str) -> dict[str, str]:
        """Service -> release id currently deployed in `environment`."""
        c = t.current_releases
        with self._tx(f"read the current releases of {environment}") as conn:
            rows = conn.execute(
                select(c.c.service, c.c.release_id)
                .where(c.c.environment == environment)
                .order_by(c.c.service)
            )
            return {row.service: row.release_id for row in rows}

    # -- locks ----------------------------------------------------------------

    def acquire_lock(self, lock: LockRecord) -> LockRecord:
        """Take the environment's deploy lock, atomically.

        Raises `EnvironmentLockedError` (a `LockHeldError`, with the held lock
        as `.lock`) when somebody else has it.
        """
        stmt = (
            self._insert(t.locks)
            .values(columns_of(lock))
            .on_conflict_do_nothing(index_elements=["environment"])
            .returning(*t.locks.c)
        )
        held: Row[Any] | None = None
        # A lock released between our INSERT and SELECT: try again.
        for _ in range(10):
            with self._tx(f"lock environment {lock.environment}", write=True) as conn:
                mine = conn.execute(stmt).first()
                if mine is not None:
                    return _lock(mine)
                held = conn.execute(
                    select(t.locks).where(t.locks.c.environment == lock.environment)
                ).first()
            if held is not None:
                raise EnvironmentLockedError(_lock(held))
        raise StateError(
            f"cannot lock environment {lock.environment}: its lock kept changing hands",
            hint="another conveyor is taking and releasing it in a loop; try again",
        )

    def get_lock(self, environment: str) -> LockRecord | None:
        """Who holds the lock of `environment`, or None."""
        with self._tx(f"read the lock of {environment}") as conn:
            row = conn.execute(select(t.locks).where(t.locks.c.environment == environment)).first()
        return None if row is None else _lock(row)

    def release_lock(self, environment: str, deployment_id: str | None = None) -> bool:
        """Release the lock; with `deployment_id`, only if held for that deployment.

        Returns True when a lock was released.
        """
        query = delete(t.locks).where(t.locks.c.environment == environment)
        if deployment_id is not None:
            query = query.where(t.locks.c.deployment_id == deployment_id)
        with self._tx(f"release the lock of {environment}", write=True) as conn:
            result = conn.execute(query)
            return result.rowcount > 0

    def update_lock(
        self,
        environment: str,
        *,
        holder: str | _Unset = UNSET,
        pid: int | _Unset | None = UNSET,
        hostname: str | _Unset | None = UNSET,
        deployment_id: str | _Unset | None = UNSET,
        message: str | _Unset | None = UNSET,
        acquired_at: datetime | _Unset = UNSET,
    ) -> LockRecord | None:
        """Change fields of a held lock, e.g. hand it to a process resuming a deployment.

        Returns the updated lock, or None when the environment is not locked.
        """
        given = {
            "holder": holder,
            "pid": pid,
            "hostname": hostname,
            "deployment_id": deployment_id,
            "message": message,
            "acquired_at": acquired_at,
        }
        changes = {name: value for name, value in given.items() if value is not UNSET}
        with self._tx(f"update the lock of {environment}", write=True) as conn:
            where = t.locks.c.environment == environment
            if changes:
                row = conn.execute(
                    update(t.locks).where(where).values(**changes).returning(*t.locks.c)
                ).first()
            else:
                row = conn.execute(select(t.locks).where(where)).first()
        return None if row is None else _lock(row)

    # -- analysis measurements ------------------------------------------------

    def add_measurement(self, m: MeasurementRecordRow) -> None:
        """Journal one analysis snapshot and its verdict."""
        with self._tx(f"record a measurement of {m.analysis}", write=True) as conn:
            conn.execute(insert(t.measurements).values(columns_of(m)))

    def next_measurement_run(self, deployment_id: str, step_index: int) -> int:
        """The number of the next analysis run of a step (1 for the first)."""
        m = t.measurements
        with self._tx(f"read the measurements of {deployment_id}") as conn:
            top = conn.execute(
                select(func.max(m.c.run)).where(
                    m.c.deployment_id == deployment_id, m.c.step_index == step_index
                )
            ).scalar()
        return int(top or 0) + 1

    def list_measurements(self, deployment_id: str) -> list[MeasurementRecordRow]:
        """Every measurement of a deployment, in the order taken."""
        m = t.measurements
        with self._tx(f"read the measurements of {deployment_id}") as conn:
            found = conn.execute(
                select(m).where(m.c.deployment_id == deployment_id).order_by(m.c.id)
            )
            return [rows.measurement(row._mapping) for row in found]

    # -- database backups -----------------------------------------------------

    def add_backup(self, b: BackupRecord) -> None:
        """Record a backup file just written."""
        with self._tx(f"record backup {b.id}", write=True) as conn:
            conn.execute(insert(t.backups).values(columns_of(b)))

    def get_backup(self, backup_id: str) -> BackupRecord | None:
        with self._tx(f"read backup {backup_id}") as conn:
            row = conn.execute(select(t.backups).where(t.backups.c.id == backup_id)).first()
        return None if row is None else rows.backup(row._mapping)

    def list_backups(self, database: str | None = None) -> list[BackupRecord]:
        """Backups, newest first; of one database when given."""
        b = t.backups
        query = select(b).order_by(b.c.created_at.desc(), b.c.seq.desc())
        if database is not None:
            query = query.where(b.c.database == database)
        with self._tx("read the backups") as conn:
            return [rows.backup(row._mapping) for row in conn.execute(query)]

    def set_backup_verification(
        self,
        backup_id: str,
        *,
        mode: str,
        ok: bool,
        detail: str,
        at: datetime,
        duration_s: float,
    ) -> None:
        """Record the outcome of the latest verification of a backup."""
        with self._tx(f"record the verification of backup {backup_id}", write=True) as conn:
            conn.execute(
                update(t.backups)
                .where(t.backups.c.id == backup_id)
                .values(
                    verified_at=at,
                    verify_mode=mode,
                    verify_ok=int(ok),
                    verify_detail=detail,
                    verify_duration_s=duration_s,
                )
            )

    def delete_backup(self, backup_id: str) -> bool:
        """Forget a backup (its file is the caller's to remove); True when there was one."""
        with self._tx(f"delete backup {backup_id}", write=True) as conn:
            result = conn.execute(delete(t.backups).where(t.backups.c.id == backup_id))
            return result.rowcount > 0

    # -- notifications --------------------------------------------------------

    def add_notification(self, n: NotificationRecord) -> None:
        with self._tx(f"record a notification to {n.target}", write=True) as conn:
            conn.execute(insert(t.notifications).values(columns_of(n)))

    def list_notifications(
        self,
        deployment_id: str | None = None,
        *,
        target: str | None = None,
        environment: str | None = None,
    ) -> list[NotificationRecord]:
        """Deliveries, oldest first, filtered by deployment, target, environment."""
        n = t.notifications
        query = select(n).order_by(n.c.id)
        if deployment_id is not None:
            query = query.where(n.c.deployment_id == deployment_id)
        if target is not None:
            query = query.where(n.c.target == target)
        if environment is not None:
            query = query.where(n.c.environment == environment)
        with self._tx("read the notifications") as conn:
            return [rows.notification(row._mapping) for row in conn.execute(query)]

    # -- scheduled job runs ---------------------------------------------------

    def add_job_run(self, r: JobRunRecord) -> JobRunRecord:
        """Record a run (its `id` is left to the database); returns it as stored."""
        with self._tx(f"record a run of job {r.job}", write=True) as conn:
            row = conn.execute(
                insert(t.job_runs).values(columns_of(r, leave_out=("id",))).returning(*t.job_runs.c)
            ).one()
        return rows.job_run(row._mapping)

    def finish_job_run(self, run_id: int, **values: Any) -> None:
        """Set the outcome of run `run_id` (status, finished_at, exit_code, output, ...)."""
        with self._tx(f"record the end of job run {run_id}", write=True) as conn:
            conn.execute(update(t.job_runs).where(t.job_runs.c.id == run_id).values(**values))

    def get_job_run(self, run_id: int) -> JobRunRecord | None:
        with self._tx(f"read job run {run_id}") as conn:
            row = conn.execute(select(t.job_runs).where(t.job_runs.c.id == run_id)).first()
        return None if row is None else rows.job_run(row._mapping)

    def prune_job_runs(self, environment: str, job: str, keep: int) -> int:
        """Forget the runs of `job` but the newest `keep`; returns how many went."""
        j = t.job_runs
        mine = and_(j.c.environment == environment, j.c.job == job)
        with self._tx(f"forget old runs of job {job}", write=True) as conn:
            newest = conn.execute(
                select(j.c.id).where(mine).order_by(j.c.id.desc()).offset(keep).limit(1)
            ).scalar()
            if newest is None:
                return 0
            return int(conn.execute(delete(j).where(mine, j.c.id <= newest)).rowcount)

    def list_job_runs(
        self,
        environment: str,
        job: str | None = None,
        *,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[JobRunRecord]:
        """Runs of the environment's jobs (of `job`, with `status`), newest first."""
        j = t.job_runs
        query = select(j).where(j.c.environment == environment).order_by(j.c.id.desc())
        if job is not None:
            query = query.where(j.c.job == job)
        if status is not None:
            query = query.where(j.c.status == status)
        if limit is not None:
            query = query.limit(limit)
        with self._tx(f"read the job runs of {environment}") as conn:
            return [rows.job_run(row._mapping) for row in conn.execute(query)]

    def analysis_verdicts(self) -> list[tuple[str, str, str]]:
        """(environment, analysis, verdict) of every analysis run that ended: the decision
        of its last measurement when final (pass, fail, inconclusive)."""
        m, d = t.measurements, t.deployments
        last = (
            select(m.c.deployment_id, m.c.step_index, m.c.run, func.max(m.c.seq).label("seq"))
            .group_by(m.c.deployment_id, m.c.step_index, m.c.run)
            .subquery()
        )
        query = (
            select(d.c.environment, m.c.analysis, m.c.data)
            .join(
                last,
                and_(
                    m.c.deployment_id == last.c.deployment_id,
                    m.c.step_index == last.c.step_index,
                    m.c.run == last.c.run,
                    m.c.seq == last.c.seq,
                ),
            )
            .join(d, d.c.id == m.c.deployment_id)
        )
        found = []
        with self._tx("read the analyses' verdicts") as conn:
            for environment, analysis, data in conn.execute(query):
                decision = str((data or {}).get("verdict", {}).get("decision", "")).lower()
                if decision in ("pass", "fail", "inconclusive"):
                    found.append((str(environment), str(analysis), decision))
        return found

    # -- alerts of monitors ---------------------------------------------------

    def put_alert(self, r: AlertRecord) -> None:
        """Record where an alert is now (replacing what was known of it)."""
        stmt = self._upsert(t.alerts, columns_of(r), keys=("environment", "name"))
        with self._tx(f"record alert {r.name} of {r.environment}", write=True) as conn:
            conn.execute(stmt)

    def list_alerts(self, environment: str | None = None) -> list[AlertRecord]:
        """The alerts known, by environment and name."""
        a = t.alerts
        query = select(a).order_by(a.c.environment, a.c.name)
        if environment is not None:
            query = query.where(a.c.environment == environment)
        with self._tx("read the alerts") as conn:
            return [rows.alert(row._mapping) for row in conn.execute(query)]

    def forget_alerts(self, environment: str, keep: Sequence[str]) -> None:
        """Forget the alerts of `environment` whose rule or probe is not in `keep`."""
        a = t.alerts
        with self._tx(f"forget old alerts of {environment}", write=True) as conn:
            conn.execute(delete(a).where(a.c.environment == environment, a.c.name.not_in(keep)))

    # -- approvals ------------------------------------------------------------

    def add_approval(self, a: ApprovalRecord) -> None:
        with self._tx(f"record the decision of {a.user} on {a.deployment_id}", write=True) as conn:
            conn.execute(insert(t.approvals).values(columns_of(a)))

    def list_approvals(self, deployment_id: str) -> list[ApprovalRecord]:
        """Decisions on a deployment, oldest first."""
        a = t.approvals
        with self._tx(f"read the approvals of {deployment_id}") as conn:
            found = conn.execute(
                select(a).where(a.c.deployment_id == deployment_id).order_by(a.c.id)
            )
            return [rows.approval(row._mapping) for row in found]

    # -- API tokens and the audit of `conveyor server` -------------------------

    def add_token(self, token: TokenRecord) -> None:
        """Record a new token; `UsageError` when its name is taken."""
        if self.get_token(token.name) is not None:
            raise UsageError(
                f'a token named "{token.name}" exists already',
                hint=f"revoke it first (conveyor tokens revoke {token.name}) or pick another name",
            )
        with self._tx(f"record token {token.name}", write=True) as conn:
            conn.execute(insert(t.tokens).values(columns_of(token)))

    def get_token(self, name: str) -> TokenRecord | None:
        with self._tx(f"read token {name}") as conn:
            row = conn.execute(select(t.tokens).where(t.tokens.c.name == name)).first()
        return None if row is None else rows.token(row._mapping)

    def find_token(self, token_hash: str) -> TokenRecord | None:
        """The token whose hash this is."""
        with self._tx("read a token") as conn:
            found = conn.execute(select(t.tokens).where(t.tokens.c.token_hash == token_hash))
            row = found.first()
        return None if row is None else rows.token(row._mapping)

    def list_tokens(self) -> list[TokenRecord]:
        with self._tx("read the tokens") as conn:
            found = conn.execute(select(t.tokens).order_by(t.tokens.c.created_at, t.tokens.c.name))
            return [rows.token(row._mapping) for row in found]

    def update_token(
        self,
        name: str,
        *,
        revoked_at: datetime | None = None,
        last_used_at: datetime | None = None,
    ) -> bool:
        """Set when the token was revoked or last used; False when there is no such token."""
        values: dict[str, Any] = {}
        if revoked_at is not None:
            values["revoked_at"] = revoked_at
        if last_used_at is not None:
            values["last_used_at"] = last_used_at
        with self._tx(f"update token {name}", write=True) as conn:
            result = conn.execute(update(t.tokens).where(t.tokens.c.name == name).values(values))
            return result.rowcount > 0

    def add_audit(self, entry: AuditRecord) -> None:
        with self._tx(f"audit a request of {entry.token}", write=True) as conn:
            conn.execute(insert(t.audit).values(columns_of(entry, leave_out=("id",))))

    def list_audit(self, limit: int = 100) -> list[AuditRecord]:
        """Audited requests, newest first."""
        a = t.audit
        with self._tx("read the audit") as conn:
            found = conn.execute(select(a).order_by(a.c.id.desc()).limit(limit))
            return [rows.audit(row._mapping) for row in found]

    # -- pipeline runs --------------------------------------------------------

    def add_pipeline_run(self, r: PipelineRunRecord) -> None:
        with self._tx(f"record pipeline run {r.id}", write=True) as conn:
            conn.execute(insert(t.pipeline_runs).values(columns_of(r)))

    def update_pipeline_run(
        self,
        run_id: str,
        *,
        jobs: dict[str, Any],
        status: str | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {"jobs": dict(jobs)}
        if status is not None:
            values["status"] = status
        if finished_at is not None:
            values["finished_at"] = finished_at
        with self._tx(f"record pipeline run {run_id}", write=True) as conn:
            conn.execute(
                update(t.pipeline_runs).where(t.pipeline_runs.c.id == run_id).values(**values)
            )

    def get_pipeline_run(self, run_id: str) -> PipelineRunRecord | None:
        with self._tx(f"read pipeline run {run_id}") as conn:
            row = conn.execute(
                select(t.pipeline_runs).where(t.pipeline_runs.c.id == run_id)
            ).first()
        return None if row is None else rows.pipeline_run(row._mapping)

    def list_pipeline_runs(
        self, git_commit: str | None = None, limit: int = 50
    ) -> list[PipelineRunRecord]:
        """Runs, newest first; of one commit when given."""
        p = t.pipeline_runs
        query = select(p).order_by(p.c.seq.desc()).limit(limit)
        if git_commit is not None:
            query = query.where(p.c.git_commit == git_commit)
        with self._tx("read the pipeline runs") as conn:
            return [rows.pipeline_run(row._mapping) for row in conn.execute(query)]

    # -- events ---------------------------------------------------------------

    def add_event(
        self,
        kind: str,
        message: str,
        environment: str | None = None,
        deployment_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> EventRecord:
        """Append an event to the audit trail, stamped now."""
        with self._tx(f"record a {kind} event", write=True) as conn:
            new = EventRecord(
                id=0,  # left out: the database numbers it
                time=_now(),
                kind=kind,
                message=message,
                environment=environment,
                deployment_id=deployment_id,
                data=data or {},
            )
            row = conn.execute(
                insert(t.events).values(columns_of(new, leave_out=("id",))).returning(*t.events.c)
            ).one()
        return _event(row)

    def journal_mark(self, deployment_id: str, environment: str) -> tuple[Any, ...]:
        """What changes whenever the journal of a deployment does: its status and control
        request, its steps, events, approvals and measurements, and the newest deployment
        of its environment. One cheap read, for the dashboard's live stream to poll."""
        d, s, e, a, m = t.deployments, t.steps, t.events, t.approvals, t.measurements

        def of(table: Table, *columns: Any) -> Any:
            return select(*columns).where(table.c.deployment_id == deployment_id)

        query = select(
            select(d.c.status).where(d.c.id == deployment_id).scalar_subquery(),
            select(d.c.request).where(d.c.id == deployment_id).scalar_subquery(),
            of(s, func.count()).scalar_subquery(),
            of(s, func.max(s.c.started_at)).scalar_subquery(),
            of(s, func.max(s.c.finished_at)).scalar_subquery(),
            of(e, func.max(e.c.id)).scalar_subquery(),
            of(a, func.count()).scalar_subquery(),
            of(m, func.max(m.c.id)).scalar_subquery(),
            select(func.max(d.c.started_at))
            .where(d.c.environment == environment)
            .scalar_subquery(),
        )
        with self._tx(f"read the journal of deployment {deployment_id}") as conn:
            return tuple(conn.execute(query).one())

    def list_events(
        self,
        environment: str | None = None,
        deployment_id: str | None = None,
        limit: int | None = None,
        kind: str | None = None,
    ) -> list[EventRecord]:
        """Events, newest first, optionally of one environment, deployment and/or kind."""
        e = t.events
        query = select(e).order_by(e.c.time.desc(), e.c.id.desc())
        if environment is not None:
            query = query.where(e.c.environment == environment)
        if kind is not None:
            query = query.where(e.c.kind == kind)
        if deployment_id is not None:
            query = query.where(e.c.deployment_id == deployment_id)
        if limit is not None:
            query = query.limit(limit)
        with self._tx("list events") as conn:
            return [_event(row) for row in conn.execute(query)]


def open_store(url: str) -> Store:
    """Open the state store at `url`, migrating its schema to the newest revision.

    `url` is `sqlite:////absolute/path/state.db` or `postgresql://user:pw@host/db`.
    Raises `StateError` (URL password redacted, with a hint) when the database
    cannot be opened or migrated.
    """
    engine = create_store_engine(url)
    try:
        ensure_schema(engine, url)
    except BaseException:
        engine.dispose()
        raise
    store = Store(engine, url)
    if store.state_file is not None:
        space.ensure_reserve(store.state_file)
    return store
