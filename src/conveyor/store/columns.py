"""The columns of a store record, read from the record's own fields.

A record of `conveyor.store.records` is the one definition of its table's data
columns. A field's type says what is stored: `str`, `int`, `float`, `bool`
(stored as 1/0), `datetime` (UTC), `dict`/`list` (JSON); `| None` allows NULL.
An `Annotated[..., Col(...)]` adds what the type cannot say: a string's length
(255 unless given) or `text=True`, a column name other than the field's, the
primary key, a server default. From that, `tables` builds the SQLAlchemy
columns, `rows` turns rows into records and `repository` records into rows;
`snapshot` reads the same names and kinds with `sqlite3`. No SQLAlchemy here:
`conveyor status` imports this module.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

__all__ = ["Col", "Columns", "Kind", "Stored", "columns_of", "names", "reader", "stored"]

Kind = Literal["string", "text", "integer", "big_integer", "float", "flag", "time", "json"]
Columns = Mapping[Any, Any]  # a row: SQLAlchemy RowMapping or a dict, column name -> value
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Col:
    """What a field's type does not say about its column (in `Annotated[type, Col(...)]`)."""

    length: int = 255
    """The length of a `str` column (VARCHAR)."""
    text: bool = False
    """A `str` column without a length (TEXT)."""
    big: bool = False
    """An `int` column of 64 bits (BIGINT)."""
    name: str | None = None
    """The column's name, when it is not the field's."""
    key: bool = False
    """Part of the table's primary key."""
    autoincrement: bool | None = None
    """Of a key column: numbered by the database (None: SQLAlchemy's "auto")."""
    nullable: bool | None = None
    """NULL allowed even though the type does not allow None (read back as the default)."""
    server_default: str | None = None
    """The value rows written before the column existed have (its migration's default)."""
    decode: Callable[[Any], Any] | None = None
    """Applied to the stored value when read, after the kind's own conversion."""


@dataclasses.dataclass(frozen=True)
class Stored:
    """One field of a record as its table stores it."""

    field: str
    column: str
    kind: Kind
    optional: bool
    """The field's type allows None."""
    nullable: bool
    """The column allows NULL: the field is optional, or `Col(nullable=True)`."""
    spec: Col
    default: Callable[[], Any] | None
    """Makes the field's default; None for a field without one."""
    container: type | None = None
    """`dict` or `list` for a JSON field."""

    def load(self, value: Any) -> Any:
        """The stored `value` (times aware, JSON decoded) as the record's field holds it."""
        if value is None and self.default is not None and not self.optional:
            value = self.default()
        if value is None:
            return None
        if self.container is not None:
            value = self.container(value)
        elif self.kind == "flag":
            value = bool(value)
        elif self.kind in ("integer", "big_integer"):
            value = int(value)
        elif self.kind == "float":
            value = float(value)
        return value if self.spec.decode is None else self.spec.decode(value)

    def dump(self, value: Any) -> Any:
        """The field's `value` as the column stores it."""
        if value is None:
            return None
        if self.container is not None:
            return self.container(value)  # a copy: the record's value stays the caller's
        if self.kind == "flag":
            return int(value)
        return value


def _kind(base: Any, spec: Col) -> tuple[Kind, type | None]:
    origin = typing.get_origin(base) or base
    if origin in (dict, list):
        return "json", origin
    if base is bool:
        return "flag", None
    if base is int:
        return ("big_integer" if spec.big else "integer"), None
    if base is float:
        return "float", None
    if base is datetime:
        return "time", None
    if base is str:
        return ("text" if spec.text else "string"), None
    raise TypeError(f"no column kind for a field of type {base!r}")


def _default(field: dataclasses.Field[Any]) -> Callable[[], Any] | None:
    if field.default is not dataclasses.MISSING:
        value = field.default
        return lambda: value
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory
    return None


def _stored(field: dataclasses.Field[Any], hint: Any) -> Stored:
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        (hint,) = members
    spec = Col()
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        spec = next((extra for extra in extras if isinstance(extra, Col)), spec)
    kind, container = _kind(hint, spec)
    return Stored(
        field=field.name,
        column=spec.name or field.name,
        kind=kind,
        optional=optional,
        nullable=optional or bool(spec.nullable),
        spec=spec,
        default=_default(field),
        container=container,
    )


@functools.cache
def stored(record: type) -> tuple[Stored, ...]:
    """The fields of the dataclass `record`, in order, as its table stores them."""
    hints = typing.get_type_hints(record, include_extras=True)
    return tuple(_stored(field, hints[field.name]) for field in dataclasses.fields(record))


def names(record: type) -> tuple[str, ...]:
    """The column names of `record`'s fields, in field order."""
    return tuple(s.column for s in stored(record))


def reader(record: Callable[..., R]) -> Callable[[Columns], R]:
    """A function making a `record` of a row (times aware, JSON decoded)."""
    fields = stored(typing.cast(type, record))

    def read(row: Columns) -> R:
        return record(**{s.field: s.load(row[s.column]) for s in fields})

    return read


def columns_of(record: Any, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """Column name -> value of the record instance `record`, but the fields `leave_out`."""
    kind: type = type(record)
    return {
        s.column: s.dump(getattr(record, s.field)) for s in stored(kind) if s.field not in leave_out
    }
