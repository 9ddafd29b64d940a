"""conveyor.store: Conveyor's state in SQLite or PostgreSQL.

`Store` and `open_store` are imported on first use, so that importing
`conveyor.store.records` (plain dataclasses) does not pay for SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.store.repository import EnvironmentLockedError, Store, open_store

__all__ = ["EnvironmentLockedError", "Store", "open_store"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from conveyor.store import repository

        return getattr(repository, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
