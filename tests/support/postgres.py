"""PostgreSQL for tests: a database of its own on the server at 127.0.0.1:5432, or a
server of its own where the test hosts reach it."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[tuple[str, Any]]:
    """(URL, autocommit connection) of a new database, dropped afterwards; the test is
    skipped when psycopg or the server is missing."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL does not answer: {exc}")
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    conn = psycopg.connect(f"host=127.0.0.1 user=postgres dbname={name}", autocommit=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}", conn
    finally:
        conn.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def private_server(address: str, port: int) -> Iterator[str]:
    """A PostgreSQL server of its own, listening on `address`:`port` (where the machine's
    server, on 127.0.0.1 only, cannot be reached: the SSH test hosts' bridge). Trust
    authentication for loopback and the test hosts' subnets; its files are removed
    afterwards. Yields the URL of its `postgres` database. Needs root (the server runs as
    the `postgres` user)."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries:
        pytest.skip("PostgreSQL's server programs are not installed")
    bin_dir = binaries[-1].parent
    data = Path(tempfile.mkdtemp(prefix="conveyor-test-pg-"))
    shutil.chown(data, "postgres", "postgres")

    def as_postgres(*argv: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            check=True,
            capture_output=True,
            timeout=120,
        )

    try:
        as_postgres(
            str(bin_dir / "initdb"),
            "-D",
            str(data / "db"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        )
        with (data / "db" / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 10.77.0.0/16 trust\n")
        options = f"-h {address} -p {port} -k {data} -c fsync=off"
        as_postgres(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data / "db"),
            "-o",
            options,
            "-l",
            str(data / "server.log"),
            "-w",
            "start",
        )
        try:
            yield f"postgresql://postgres@{address}:{port}/postgres"
        finally:
            as_postgres(
                str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "-w", "stop"
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)
