"""The parts of the router on a host (`routers/caddy_remote.py`) that do not need SSH:
the script that reads the access log on the host from where the copy stopped (run here
with this machine's python3, as the host runs it), and the local copy's rolls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.routers import caddy_remote
from conveyor.routers.caddy import rolled_logs


def read_new(log: Path, inode: int, offset: int) -> tuple[dict[str, int], bytes]:
    done = subprocess.run(
        [sys.executable, "-S", "-c", caddy_remote._READ_NEW, str(log), str(inode), str(offset)],
        capture_output=True,
        check=True,
    )
    header, _, data = done.stdout.partition(b"\n")
    return json.loads(header), data


def test_the_host_side_reads_what_was_appended_and_follows_a_roll(tmp_path: Path) -> None:
    log = tmp_path / "access-prod.log"
    assert read_new(log, 0, 0) == ({"inode": 0, "offset": 0}, b"")  # no log yet

    log.write_bytes(b"1\n2\n")
    mark, data = read_new(log, 0, 0)
    assert data == b"1\n2\n" and mark == {"inode": log.stat().st_ino, "offset": 4}

    with log.open("ab") as handle:
        handle.write(b"3\n")
    mark, data = read_new(log, mark["inode"], mark["offset"])
    assert data == b"3\n" and mark["offset"] == 6

    # Caddy rolls: the old file is renamed (same inode), a new one started. Another
    # environment's log (`access-prod-eu.log`) is not mistaken for the rolled one.
    (tmp_path / "access-prod-eu.log").write_bytes(b"other\n")
    with log.open("ab") as handle:
        handle.write(b"4\n")
    log.rename(tmp_path / "access-prod-2026-12-07T10-00-00.000.log")
    log.write_bytes(b"5\n")
    mark, data = read_new(log, mark["inode"], mark["offset"])
    assert data == b"4\n5\n"
    assert mark == {"inode": log.stat().st_ino, "offset": 2}

    # A log truncated (or replaced with the rolled copy gone) is read from its start.
    log.write_bytes(b"6\n")
    mark, data = read_new(log, mark["inode"], 100)
    assert data == b"6\n"


def test_the_local_copy_rolls_as_caddy_rolls_and_keeps_every_line_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caddy_remote, "ACCESS_LOG_ROLL_MB", 10 / (1024 * 1024))  # 10 bytes
    monkeypatch.setattr(caddy_remote, "ACCESS_LOG_ROLL_KEEP", 100)
    copy = tmp_path / "state" / "access-prod.log"
    lines = [f"line {n}\n".encode() for n in range(8)]
    for line in lines:
        caddy_remote._append(copy, line)
    rolled = sorted(rolled_logs(copy))
    assert rolled, "the copy grew past the roll size and was never rolled"
    assert b"".join(p.read_bytes() for p in [*rolled, copy]) == b"".join(lines)

    monkeypatch.setattr(caddy_remote, "ACCESS_LOG_ROLL_KEEP", 1)
    caddy_remote._append(copy, b"more\n")
    assert len(rolled_logs(copy)) == 1


def test_forwarded_sockets_of_processes_gone_are_removed(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp_path / f"caddy-host1-{gone.pid}.sock"
    mine = tmp_path / f"caddy-host1-{os.getpid()}.sock"
    other = tmp_path / "supervisor.sock"
    for path in (stale, mine, other):
        path.touch()
    caddy_remote._remove_stale_sockets(tmp_path)
    assert not stale.exists() and mine.exists() and other.exists()
