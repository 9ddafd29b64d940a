"""Backup benchmark: Conveyor's PostgreSQL backup against a bare `pg_dump -Fc`, on 1 GB.

    .venv/bin/python bench/backup.py [--size-mb 1024] [--rounds 3] [--restore] [--keep]

Fills a database on the local PostgreSQL (127.0.0.1:5432, user postgres) to
`--size-mb` (pg_database_size) with an orders-like table: integers, short
codes, a timestamp and a paragraph of text per row, which compresses about
as well as application data does. Then, alternating `--rounds` times:

- baseline: `pg_dump --format=custom --file=...`, timed from start to exit;
- Conveyor: `PostgresDatabase.backup`, which is the same `pg_dump -Fc` run
  inside an exported snapshot, plus counting every table's rows in that
  snapshot while it runs, plus writing the dump through a sha256 and fsyncing
  it, from the same start to the renamed, complete file.

Throughput is the database size over the median time; the target is
Conveyor at least 95% of the bare pg_dump. Then the verification Conveyor
runs before a migration is timed: the sha256 and size of the file against
the record, and `pg_restore` reading the whole archive to /dev/null
(`verify: read`); with `--restore` also `verify: restore` (a scratch
database, every table's row count compared). Writes bench/results/backup.json.
The database is dropped at the end unless `--keep` (then it is reused by the
next run, which saves the fill).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from conveyor.databases.backups import human_size  # noqa: E402
from conveyor.databases.postgres import PostgresDatabase  # noqa: E402
from conveyor.databases.urls import parse_database_url  # noqa: E402

RESULTS = REPO / "bench" / "results" / "backup.json"
NAME = "conveyor_bench_backup"
TARGET_RATIO = 0.95
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def fill(size_mb: int) -> int:
    """Create (or reuse) the database and grow it to `size_mb`; its size in bytes."""
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (NAME,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{NAME}"')
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={NAME}", autocommit=True) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, customer integer, "
            "code text, placed timestamptz, note text)"
        )
        db.execute("CREATE TABLE IF NOT EXISTS customers (id integer PRIMARY KEY, name text)")
        db.execute(
            "INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 10000) g "
            "ON CONFLICT DO NOTHING"
        )
        size = _size(db)
        started = time.monotonic()
        while size < size_mb * 1024 * 1024:
            db.execute(
                "INSERT INTO orders (customer, code, placed, note) "
                "SELECT (random() * 9999)::int + 1, upper(substr(md5(g::text), 1, 8)), "
                "now() - g * interval '1 second', "
                "'Order ' || g || ' for ' || md5(g::text) || ': please deliver to the back door, "
                "ring twice; ' || repeat(md5((g * 7)::text), 3) "
                "FROM generate_series(1, 200000) g"
            )
            size = _size(db)
            print(f"  filling: {human_size(size)} ({time.monotonic() - started:.0f} s)", flush=True)
        db.execute("VACUUM ANALYZE")
        return _size(db)


def _size(db: Any) -> int:
    return int(db.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def bare_pg_dump(dest: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "--format=custom", f"--file={dest}", NAME],
        check=True,
    )
    return time.monotonic() - started


def conveyor_backup(dest: Path) -> tuple[float, Any]:
    db = PostgresDatabase(parse_database_url(f"postgresql://postgres@127.0.0.1:5432/{NAME}"))
    started = time.monotonic()
    result = asyncio.run(db.backup(dest))
    return time.monotonic() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--restore", action="store_true", help="also time verify: restore")
    parser.add_argument("--keep", action="store_true", help="keep the database for the next run")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    size = fill(args.size_mb)
    print(f"database {NAME}: {human_size(size)}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-backup-"))
    bare: list[float] = []
    ours: list[float] = []
    report: dict[str, Any] = {}
    try:
        for n in range(1, args.rounds + 1):
            for what in ("bare", "conveyor") if n % 2 else ("conveyor", "bare"):
                dest = work / f"{what}.dump"
                dest.unlink(missing_ok=True)
                subprocess.run(["sync"], check=True)
                if what == "bare":
                    took = bare_pg_dump(dest)
                    bare.append(took)
                else:
                    took, result = conveyor_backup(dest)
                    ours.append(took)
                print(
                    f"  round {n} {what:>8}: {took:6.1f} s, {human_size(size / took)}/s, "
                    f"dump {human_size(dest.stat().st_size)}",
                    flush=True,
                )
        report = verify(result, size, args.restore)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            import psycopg

            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')

    bare_s, ours_s = statistics.median(bare), statistics.median(ours)
    ratio = bare_s / ours_s
    ok = ratio >= TARGET_RATIO
    rows = sum(result.tables.values())
    print(
        f"\ndatabase {human_size(size)}, {rows:,} rows; dump {human_size(result.size)}; "
        f"{args.rounds} rounds, medians:"
    )
    print(f"  bare pg_dump -Fc         {bare_s:6.1f} s  {human_size(size / bare_s)}/s")
    print(f"  Conveyor backup          {ours_s:6.1f} s  {human_size(size / ours_s)}/s")
    print(
        f"  throughput, Conveyor / bare: {ratio:.3f} (target >= {TARGET_RATIO:g}): "
        f"{'PASS' if ok else 'MISS'}"
    )
    print(
        f"  verify read: {report['verify_read_s']:.1f} s (sha256 {report['sha256_s']:.1f} s, "
        f"pg_restore to /dev/null {report['read_back_s']:.1f} s)"
    )
    if "verify_restore_s" in report:
        print(
            f"  verify restore (scratch database, row counts): {report['verify_restore_s']:.1f} s"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "database_bytes": size,
                "rows": rows,
                "dump_bytes": result.size,
                "bare_s": bare,
                "conveyor_s": ours,
                "ratio": ratio,
                "target": TARGET_RATIO,
                "pass": ok,
                **report,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(REPO)}")


def verify(result: Any, size: int, restore: bool) -> dict[str, Any]:
    """Time what `verify_backup` does, part by part."""
    from conveyor.databases.base import file_sha256

    db = PostgresDatabase(parse_database_url(f"postgresql://postgres@127.0.0.1:5432/{NAME}"))
    started = time.monotonic()
    file_sha256(result.path)
    sha = time.monotonic() - started
    started = time.monotonic()
    asyncio.run(db.read_back(result.path))
    read = time.monotonic() - started
    out: dict[str, Any] = {"sha256_s": sha, "read_back_s": read, "verify_read_s": sha + read}
    if restore:
        started = time.monotonic()

        async def scratch_restore() -> None:
            scratch = await db.create_scratch("conveyor_bench_scratch")
            try:
                await db.restore(result.path, into=scratch)
                assert await db.row_counts(scratch) == result.tables
            finally:
                await db.drop_scratch(scratch)

        asyncio.run(scratch_restore())
        out["verify_restore_s"] = sha + read + (time.monotonic() - started)
    return out


if __name__ == "__main__":
    main()
