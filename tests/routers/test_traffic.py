"""The parts both routers use to turn a traffic log into counters (routers/traffic.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conveyor.analysis.metrics import Histogram
from conveyor.routers.traffic import LogPosition, Tally, Window, valid_latency


def _read(position: LogPosition, log: Path, rolled: list[Path]) -> list[bytes]:
    seen: list[bytes] = []
    position.read_new(log, rolled, seen.append)
    return seen


def _touch(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_log_position_reads_each_whole_line_once_across_rolls(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    position = LogPosition()
    assert _read(position, log, []) == []  # no log yet
    log.write_bytes(b"1\n2\n3")
    assert _read(position, log, []) == [b"1", b"2"]  # "3" is still being written
    assert _read(position, log, []) == []
    with log.open("ab") as handle:
        handle.write(b"\n4\n")
    first, second = tmp_path / "x-a.log", tmp_path / "x-b.log"
    log.rename(first)
    log.write_bytes(b"5\n")
    log.rename(second)
    log.write_bytes(b"6\n")
    _touch(first, 1_000_000_000)
    _touch(second, 2_000_000_000)
    # the copy read last time is finished first, then the later copy, then the new log
    assert _read(position, log, [second, first]) == [b"3", b"4", b"5", b"6"]
    assert _read(position, log, [second, first]) == []

    # the file read last time is gone (rolled, then deleted): no copy is read
    # (that could count lines twice), the new log from its start
    log.unlink()
    log.write_bytes(b"7\n")
    assert _read(position, log, [second]) == [b"7"]

    restored = LogPosition.from_json(position.to_json())
    assert restored == position
    assert _read(restored, log, []) == []


def test_tally_counts_classes_and_latencies_and_round_trips() -> None:
    tally = Tally()
    for status, millis in [(200, 1.0), (302, 2.0), (404, 3.0), (503, 300.0), (101, 0.5)]:
        tally.count(status, millis)
    assert (tally.requests, tally.classes) == (5, [1, 1, 1, 1])  # 1xx: a request, no class
    assert tally.histogram().total == 5
    assert tally.histogram().count_above(250.0) == 1
    again = Tally.from_json(tally.to_json())
    assert (again.requests, again.classes, again.histogram()) == (5, [1, 1, 1, 1], tally.latency)
    assert Tally.from_json({}).histogram() == Histogram.empty()
    with pytest.raises(ValueError):
        Tally.from_json({"status": [1, 2]})


def test_valid_latency() -> None:
    assert valid_latency("0.25", 1000.0) == 250.0
    assert valid_latency(b"12") == 12.0
    assert valid_latency(3) == 3.0
    for bad in (b"-1", "nan", "inf", "x", None, True, [1]):
        assert valid_latency(bad) is None


def test_window_keeps_the_last_requests_and_saves_compactly() -> None:
    window = Window(3)
    for i in range(10):
        window.append(f"a:{i % 2}", float(i))
    window.append("b:1", 100.0)
    window.trim()
    assert list(window.rows()) == [("a:0", 8.0), ("a:1", 9.0), ("b:1", 100.0)]
    saved = window.to_json()
    assert saved["addresses"] == ["a:0", "a:1", "b:1"]
    restored = Window.from_json(saved, 2)  # a smaller size cuts the oldest
    assert list(restored.rows()) == [("a:1", 9.0), ("b:1", 100.0)]
    assert restored.quantiles() == {"a:1": (9.0, 9.0, 9.0), "b:1": (100.0, 100.0, 100.0)}
    assert list(restored.without(["a:1"]).rows()) == [("b:1", 100.0)]
    assert Window.from_json(restored.without(["a:1"]).to_json(), 5).addresses == ["b:1"]

    for damaged in (
        {**saved, "ms": ""},
        {**saved, "addresses": ["a:0"]},
        {**saved, "index": "not base64!"},
        {"addresses": ["a", "a"], "index": "", "ms": ""},
    ):
        with pytest.raises((ValueError, KeyError)):
            Window.from_json(damaged, 3)
