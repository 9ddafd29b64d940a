"""Database URLs as people write them, and what each engine's tools need from them."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from conveyor.redaction import redact_url

POSTGRESQL = "postgresql"
MYSQL = "mysql"  # MySQL and MariaDB: the same tools and protocol
SQLITE = "sqlite"
ENGINES = (POSTGRESQL, MYSQL, SQLITE)

_SCHEMES = {
    "postgresql": POSTGRESQL,
    "postgres": POSTGRESQL,
    "mysql": MYSQL,
    "mariadb": MYSQL,
    "sqlite": SQLITE,
}
_DEFAULT_PORTS = {POSTGRESQL: 5432, MYSQL: 3306}
# Database names Conveyor creates for itself (scratch restores) must stay short and plain.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_$-]{1,63}$")


class DatabaseUrlError(ValueError):
    """A database URL Conveyor cannot use; the message says what is wrong."""


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed database URL.

    For PostgreSQL and MySQL/MariaDB `name` is the database; for SQLite it is
    the file's path (absolute after `parse_database_url`).
    """

    engine: str
    name: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    options: tuple[tuple[str, str], ...] = ()  # query parameters, e.g. sslmode=require
    text: str = ""  # as written (with the password): what the app gets as DATABASE_URL

    def redacted(self) -> str:
        """The URL with its password masked, for messages."""
        return redact_url(self.text) if self.text else self.display()

    def display(self) -> str:
        """A short name for messages: engine, host and database, never a password."""
        if self.engine == SQLITE:
            return f"sqlite {self.name}"
        where = f"{self.host or 'localhost'}:{self.port or _DEFAULT_PORTS[self.engine]}"
        return f"{self.engine} {where}/{self.name}"

    def with_name(self, name: str) -> DatabaseUrl:
        """The same server and credentials, another database (or SQLite file)."""
        if self.engine != SQLITE and not _PLAIN_NAME.match(name):
            raise DatabaseUrlError(f"invalid database name {name!r}")
        text = ""
        if self.engine != SQLITE and self.text:
            parts = urlsplit(self.text)
            text = parts._replace(path="/" + name).geturl()
        elif self.engine == SQLITE:
            text = f"sqlite:///{name}"
        return replace(self, name=name, text=text)

    def option(self, key: str) -> str | None:
        return dict(self.options).get(key)


def parse_database_url(text: str, base_dir: Path | None = None) -> DatabaseUrl:
    """Parse `postgresql://user:pw@host:5432/db`, `mysql://…` (or `mariadb://`) and
    `sqlite:///relative/path.db` / `sqlite:////absolute/path.db`.

    Driver suffixes (`postgresql+psycopg://`, `mysql+pymysql://`) are accepted,
    as SQLAlchemy users write them. A relative SQLite path is relative to
    `base_dir` (the directory of conveyor.yml). Raises `DatabaseUrlError`
    with a message that never contains the password.

    >>> parse_database_url("postgres://app:s3cret@db:6432/shop?sslmode=require").display()
    'postgresql db:6432/shop'
    >>> parse_database_url("sqlite:///data/shop.db", Path("/srv/app")).name
    '/srv/app/data/shop.db'
    """
    shown = redact_url(text)
    scheme, sep, _ = text.partition("://")
    if not sep:
        raise DatabaseUrlError(
            f'expected a URL like "postgresql://user:password@host:5432/name", '
            f'"mysql://user:password@host:3306/name" or "sqlite:///path/to/file.db", got {shown!r}'
        )
    engine = _SCHEMES.get(scheme.split("+", 1)[0].lower())
    if engine is None:
        raise DatabaseUrlError(
            f"unsupported database {scheme!r} in {shown!r}: expected postgresql, mysql, "
            "mariadb or sqlite"
        )
    if engine == SQLITE:
        return _parse_sqlite(text, shown, base_dir)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise DatabaseUrlError(f"invalid database URL {shown!r}: {exc}") from None
    name = unquote(parts.path.lstrip("/"))
    if not name or "/" in name:
        raise DatabaseUrlError(f"the database URL {shown!r} names no database (…/name at the end)")
    return DatabaseUrl(
        engine=engine,
        name=name,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        options=tuple(parse_qsl(parts.query)),
        text=text,
    )


def _parse_sqlite(text: str, shown: str, base_dir: Path | None) -> DatabaseUrl:
    _, _, rest = text.partition("://")
    if not rest.startswith("/") or rest == "/":
        raise DatabaseUrlError(
            f"expected sqlite:///relative/path.db or sqlite:////absolute/path.db, got {shown!r}"
        )
    raw = unquote(rest[1:].split("?", 1)[0])  # "sqlite:///x" -> "x", "sqlite:////x" -> "/x"
    if raw in ("", ":memory:"):
        raise DatabaseUrlError(f"an in-memory SQLite database cannot be backed up: {shown!r}")
    path = Path(raw)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return DatabaseUrl(engine=SQLITE, name=str(path), text=f"sqlite:///{path}")
