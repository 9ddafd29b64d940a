"""The schema revision this version of Conveyor writes, importable without SQLAlchemy.

`conveyor status` reads SQLite with the standard library when the database is
at this revision; `conveyor.store.db` migrates databases up to it.
"""

from __future__ import annotations

# Bump with every new migration; a test checks it against the scripts' head.
HEAD_REVISION = "0011"
