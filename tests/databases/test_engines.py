"""Backups, read-backs and restores against real PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from conveyor.databases import parse_database_url
from conveyor.databases.base import compare_tables
from conveyor.errors import BackupCorruptError, DatabaseError
from tests.databases.conftest import LiveDatabase, seed_shop


def test_backup_records_every_table_and_restores_exactly(
    live: LiveDatabase, tmp_path: Path
) -> None:
    seed_shop(live)
    before = live.checksums()
    db = live.database()
    result = asyncio.run(db.backup(tmp_path / "one.bak"))
    assert result.path.exists() and result.size == result.path.stat().st_size > 0
    assert result.tables == {live.key("customers"): 20, live.key("orders"): 300}
    assert len(result.sha256) == 64 and result.duration_s > 0
    assert not list(tmp_path.glob(".*partial"))

    # A migration that went wrong half-way: rows gone, a column added, a new table.
    live.execute("DELETE FROM orders WHERE id > 100")
    live.execute("ALTER TABLE orders ADD COLUMN flag integer")
    live.execute("CREATE TABLE half_done (x integer)")
    asyncio.run(db.restore(result.path))
    assert live.checksums() == before
    assert live.tables() == ["customers", "orders"]


# SQLite's backup API copies one snapshot by construction: nothing to race there.
@pytest.mark.parametrize("live", ["postgresql", "mysql"], indirect=True)
def test_row_counts_are_the_snapshots_even_while_the_app_writes(
    live: LiveDatabase, tmp_path: Path
) -> None:
    seed_shop(live, orders=2000)
    stop = threading.Event()
    other = LiveDatabaseWriter(live, stop)
    other.start()
    try:
        # Its connection takes a while: the backup starts once it writes.
        assert other.writing.wait(30), "the writer could not connect"
        before = other.inserted
        result = asyncio.run(live.database().backup(tmp_path / "busy.bak"))
        during = other.inserted - before
    finally:
        stop.set()
        other.join()
    assert during > 0, "the writer must have run during the backup"
    db = live.database()
    scratch = asyncio.run(db.create_scratch("conveyor_test_scratch_" + tmp_path.name[-8:]))
    try:
        asyncio.run(db.restore(result.path, into=scratch))
        assert compare_tables(result.tables, asyncio.run(db.row_counts(scratch))) == []
    finally:
        asyncio.run(db.drop_scratch(scratch))


class LiveDatabaseWriter(threading.Thread):
    """Inserts orders on its own connection until stopped."""

    def __init__(self, live: LiveDatabase, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url = live.url
        self.engine = live.engine
        self.stop = stop
        self.inserted = 0
        self.writing = threading.Event()  # set after the first insert

    def run(self) -> None:
        if self.engine == "postgresql":
            import psycopg

            conn = psycopg.connect(
                host=self.url.host,
                port=self.url.port,
                user=self.url.user,
                dbname=self.url.name,
                autocommit=True,
            )
            insert = "INSERT INTO orders (customer_id, item) VALUES (1, 'late')"
            while not self.stop.is_set():
                conn.execute(insert)
                self.inserted += 1
                self.writing.set()
            conn.close()
        else:
            import pymysql

            conn = pymysql.connect(
                host=self.url.host,
                port=self.url.port,
                user=self.url.user or "",
                database=self.url.name,
                autocommit=True,
            )
            with conn.cursor() as cursor:
                while not self.stop.is_set():
                    cursor.execute("INSERT INTO orders (customer_id, item) VALUES (1, 'late')")
                    self.inserted += 1
                    self.writing.set()
            conn.close()


def test_read_back_rejects_a_truncated_backup(live: LiveDatabase, tmp_path: Path) -> None:
    seed_shop(live)
    db = live.database()
    result = asyncio.run(db.backup(tmp_path / "whole.bak"))
    assert asyncio.run(db.read_back(result.path)).detail
    cut = tmp_path / "cut.bak"
    data = result.path.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BackupCorruptError) as caught:
        asyncio.run(db.read_back(cut))
    assert "cut.bak" in caught.value.message


def test_scratch_databases_come_and_go(live: LiveDatabase, tmp_path: Path) -> None:
    seed_shop(live, orders=10)
    db = live.database()
    result = asyncio.run(db.backup(tmp_path / "b.bak"))
    scratch = asyncio.run(db.create_scratch("conveyor_test_s_" + tmp_path.name[-8:]))
    asyncio.run(db.restore(result.path, into=scratch))
    assert asyncio.run(db.row_counts(scratch)) == result.tables
    asyncio.run(db.drop_scratch(scratch))
    if live.engine == "sqlite":
        assert not Path(scratch.name).exists()
    else:
        with pytest.raises(DatabaseError, match="cannot connect"):
            asyncio.run(db.row_counts(scratch))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:Sup3r-s3cret@127.0.0.1:1/shop",
        "mysql://app:Sup3r-s3cret@127.0.0.1:1/shop",
    ],
)
def test_an_unreachable_server_is_named_and_the_password_never_shown(
    url: str, tmp_path: Path
) -> None:
    from conveyor.databases import database_for

    db = database_for(parse_database_url(url))
    with pytest.raises(DatabaseError) as caught:
        asyncio.run(db.backup(tmp_path / "x.bak"))
    text = caught.value.message + (caught.value.hint or "")
    assert "127.0.0.1:1/shop" in text
    assert "Sup3r-s3cret" not in text
    assert not list(tmp_path.iterdir())


def test_a_wrong_password_is_reported_without_it(tmp_path: Path) -> None:
    pymysql = pytest.importorskip("pymysql")
    try:
        pymysql.connect(host="127.0.0.1", user="root", connect_timeout=3).close()
    except pymysql.MySQLError as exc:
        pytest.skip(f"MariaDB does not answer: {exc}")
    from conveyor.databases import database_for

    db = database_for(parse_database_url("mysql://nobody:Wr0ng-Passw0rd@127.0.0.1:3306/mysql"))
    with pytest.raises(DatabaseError) as caught:
        asyncio.run(db.backup(tmp_path / "x.bak"))
    assert "Access denied" in caught.value.message
    assert "Wr0ng-Passw0rd" not in caught.value.message


def test_a_full_disk_leaves_no_partial_file_and_says_what_to_do(
    live: LiveDatabase, tmp_path: Path
) -> None:
    import secrets
    import subprocess

    seed_shop(live, orders=10)
    for _ in range(300):  # about 200 KB that does not compress
        live.execute(
            "INSERT INTO orders (customer_id, item, note) VALUES (1, 'x', %s)",
            (secrets.token_hex(400),),
        )
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(tiny)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(DatabaseError) as caught:
            asyncio.run(live.database().backup(tiny / "full.bak"))
        assert "no space left" in caught.value.message
        assert caught.value.hint and "directory" in caught.value.hint
        assert list(tiny.iterdir()) == []
    finally:
        subprocess.run(["umount", str(tiny)], check=True)
