"""Opening the state database: URLs, engines, transactions and migrations.

Alembic owns the schema. Opening a database that is already at
`HEAD_REVISION` costs one query and never imports Alembic, which keeps CLI
start-up fast; only an empty or older database pays for the migration
machinery.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from conveyor.errors import ConveyorError, StateError
from conveyor.redaction import (
    redact_registered,
    redact_text,
    redact_url,
    registered_secrets,
    url_secrets,
)
from conveyor.store.integrity import check_file, damaged, is_corruption

# Re-exported: defined apart so that `conveyor status` can check it without SQLAlchemy.
from conveyor.store.revision import HEAD_REVISION as HEAD_REVISION

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# How long a SQLite writer waits for another process's write transaction.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# How long connecting to PostgreSQL may take before we report it unreachable.
POSTGRES_CONNECT_TIMEOUT_S = 10
# pg_advisory_xact_lock key serialising concurrent migrations ("conv").
_MIGRATION_LOCK_KEY = 0x636F6E76
# Execution option asking for a write transaction (BEGIN IMMEDIATE on SQLite).
_WRITE_OPTION = "conveyor_write"

_URL_HINT = "use sqlite:////absolute/path/state.db or postgresql://user:password@host:5432/database"


def scrub(message: str, url: str) -> str:
    """`message` with every password of `url` replaced by `***`."""
    return redact_text(message, url_secrets(url))


def describe_error(exc: BaseException, url: str) -> str:
    """One line saying what the database or driver reported, without secrets.

    For driver errors only the driver's own message is used: SQLAlchemy's text
    would add the statement's parameters, which may carry user data.
    """
    origin: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        origin = exc.orig
    lines = [" ".join(line.split()) for line in str(origin).splitlines() if line.strip()]
    reason = "; ".join(lines) or type(origin).__name__
    return scrub(reason, url)


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL for a state URL; `postgresql://` means psycopg 3."""
    display = redact_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StateError(
            f"invalid state database URL {display}: {describe_error(exc, url)}", hint=_URL_HINT
        ) from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        return parsed
    raise StateError(
        f"unsupported state database URL {display}: conveyor stores its state in SQLite or "
        "PostgreSQL",
        hint=_URL_HINT,
    )


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite state database; None for PostgreSQL or in-memory SQLite."""
    if engine.url.get_backend_name() != "sqlite":
        return None
    return _sqlite_path(engine.url)


def corruption_error(engine: Engine, exc: BaseException) -> StateError | None:
    """A `StateCorruptError` when `exc` says the SQLite file is damaged, else None."""
    path = sqlite_file(engine)
    if path is None or not is_corruption(exc):
        return None
    return damaged(path, "is damaged (SQLite cannot read it)")


def _sqlite_path(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_store_engine(url: str) -> Engine:
    """An engine for `url`, tuned for several conveyor processes at once.

    SQLite gets WAL (readers never wait for the writer), a busy timeout (writers
    queue instead of failing) and foreign keys. Transactions that will write
    start with `BEGIN IMMEDIATE`: a deferred transaction that reads first and
    writes later can fail at once with "database is locked" when another
    process wrote in between, whatever the busy timeout.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_path(parsed)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(
                    f"cannot create the directory of the state database {redact_url(url)}: "
                    f"{exc.strerror or exc}",
                    hint=f"check that {path.parent} can be created and written by this user",
                ) from None
            check_file(path)
        engine = create_engine(parsed)
        in_memory = path is None

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            # Let SQLAlchemy's "begin" hook below emit BEGIN, not the driver.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
                if not in_memory:
                    cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get(_WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return _masking_secrets(engine)

    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    if "application_name" not in parsed.query:
        connect_args["application_name"] = "conveyor"
    try:
        # The server keeps its pool for days: check connections before use.
        return _masking_secrets(
            create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
        )
    except ImportError as exc:
        raise StateError(
            f"cannot use the state database {redact_url(url)}: the psycopg driver is missing "
            f"({exc})",
            hint='install it: pip install "conveyor-deploy[postgres]"',
        ) from None


def _masking_secrets(engine: Engine) -> Engine:
    """`engine`, with the resolved secrets (`conveyor.redaction.register_secrets`) masked
    in every string it writes: one place for the journal, history, notes and errors."""

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _mask(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> tuple[str, Any]:
        if registered_secrets():
            parameters = _masked(parameters)
        return statement, parameters

    return engine


def _masked(value: Any) -> Any:
    """`value` (a statement's parameters: strings in tuples, lists and dicts) with the
    registered secrets masked."""
    if isinstance(value, str):
        return redact_registered(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_masked(v) for v in value)
    return value


@contextmanager
def transaction(engine: Engine, *, write: bool) -> Iterator[Connection]:
    """A connection inside one transaction, committed when the block ends."""
    with engine.connect() as conn:
        if write:
            conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            yield conn


def _connect_hint(engine: Engine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        where = url.database or ":memory:"
        return f"check that {where} is a SQLite database that this user can read and write"
    host = url.host or "localhost"
    port = url.port or 5432
    return (
        f"check that PostgreSQL is running at {host}:{port} and that the user, password and "
        "database in the state URL are right (the database must exist)"
    )


def current_revision(engine: Engine, url: str) -> str | None:
    """The schema revision recorded in `alembic_version`; None when there is none.

    Raises `StateError` when the database cannot be reached at all.
    """
    try:
        conn = engine.connect()
    except (SQLAlchemyError, UnicodeDecodeError) as exc:
        corrupt = corruption_error(engine, exc)
        if corrupt is not None:
            raise corrupt from None
        if isinstance(exc, UnicodeDecodeError):
            raise
        raise StateError(
            f"cannot open the state database {redact_url(url)}: {describe_error(exc, url)}",
            hint=_connect_hint(engine),
        ) from None
    try:
        with conn.begin():
            row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    except (SQLAlchemyError, UnicodeDecodeError) as exc:
        corrupt = corruption_error(engine, exc)
        if corrupt is not None:
            raise corrupt from None
        if isinstance(exc, UnicodeDecodeError):
            raise
        return None  # no version table yet: an empty database
    finally:
        conn.close()
    return None if row is None else str(row[0])


def ensure_schema(engine: Engine, url: str) -> None:
    """Migrate the database to `HEAD_REVISION` unless it is there already."""
    found = current_revision(engine, url)
    if found != HEAD_REVISION:
        migrate(engine, url, found)


def alembic_config() -> Config:
    """An Alembic configuration for the packaged migrations; no ini file needed.

    For development: `command.revision(alembic_config(), "message")` writes a
    new migration script into the package.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def migrate(engine: Engine, url: str, found: str | None = None) -> None:
    """Upgrade the schema to the newest revision, in one transaction.

    Concurrent callers are serialised (SQLite's write lock, a PostgreSQL
    advisory lock) and the loser finds the work done.
    """
    display = redact_url(url)
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = alembic_config()
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if found is not None and found not in known:
        raise StateError(
            f"the state database {display} has schema revision {found}, which this version of "
            f"conveyor does not know (it knows up to {HEAD_REVISION})",
            hint="a newer conveyor wrote to this database: upgrade conveyor to use it",
        )
    try:
        with transaction(engine, write=True) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except ConveyorError:
        raise
    except (SQLAlchemyError, CommandError) as exc:
        raise StateError(
            f"cannot migrate the state database {display} to schema revision {HEAD_REVISION}: "
            f"{describe_error(exc, url)}",
            hint=_connect_hint(engine),
        ) from None
