"""Reading a data plane's traffic log into cumulative per-backend counters.

Both routers learn about requests from a log their data plane writes (Caddy's
JSON access log, HAProxy's `conveyor-traffic` lines) and keep, in a small
state file, where they stopped reading and what they counted so far. The
parts they share live here:

* `LogPosition`: where reading stopped (inode and offset), and how to read
  only the complete lines appended since, following the rolls of the file.
* `Tally`: cumulative counters of one backend (requests, status classes
  2xx..5xx and a latency `Histogram` with `DEFAULT_BOUNDS_MS`); they only
  grow, so the canary analysis can diff two snapshots.
* `Window`: the recent (address, latency) pairs that the p50/p95/p99 shown
  to people come from, kept and saved as two arrays (base64 in the JSON
  file) rather than as rows: a 10,000-request window is ~130 kB that load
  and save in well under a millisecond, where JSON rows took ~15 ms each
  way (measured) on every call of `traffic_stats`.
"""

from __future__ import annotations

import base64
import contextlib
import math
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.analysis.metrics import Histogram

__all__ = ["LogPosition", "Tally", "Window", "percentile", "valid_latency"]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


# ---------------------------------------------------------------------------
# Following a log file


_HEAD = 64  # bytes of a file's start that tell it from another with a reused inode


@dataclass
class LogPosition:
    """Where reading a log stopped: which file (inode, first bytes) and the offset after the
    last whole line.

    The first bytes tell a new file from the one read last time when the
    file system gave the new one the same inode (a rolled copy deleted, then
    a new log created, within one interval): otherwise its start would be
    taken for lines already read.
    """

    inode: int | None = None
    offset: int = 0
    head: bytes = b""

    def _is_ours(self, inode: int, head: bytes) -> bool:
        return inode == self.inode and (head.startswith(self.head) or self.head.startswith(head))

    def read_new(
        self, log: Path, rolled: Iterable[Path], handle_line: Callable[[bytes], None]
    ) -> None:
        """Call `handle_line` on every complete line appended since the last call.

        `rolled` are the rolled copies of the log that may still exist. When
        the log was rolled since the last call, the file read last time is
        finished first (found among `rolled`), then the copies rolled after
        it (by modification time), then the new log from its start. A line
        is never read twice; lines of a copy that was deleted before it was
        finished are lost (counters then grow less, never more). A first
        call (no inode yet) reads the current log only.
        """
        try:
            info = log.stat()
            head = _head(log)
        except FileNotFoundError:
            return
        if self.inode is not None and not self._is_ours(info.st_ino, head):
            copies: list[tuple[int, int, Path]] = []
            for path in rolled:
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    if stat.st_ino != info.st_ino:
                        copies.append((stat.st_mtime_ns, stat.st_ino, path))
            copies.sort()
            first = next(
                (
                    i
                    for i, (_, inode, path) in enumerate(copies)
                    if inode == self.inode and self._is_ours(inode, _head(path))
                ),
                None,
            )
            if first is not None:
                for i, (_, _, path) in enumerate(copies[first:]):
                    with contextlib.suppress(OSError):
                        _read_lines(path, self.offset if i == 0 else 0, handle_line)
            self.offset = 0
        elif info.st_size < self.offset:
            self.offset = 0  # truncated in place
        self.inode = info.st_ino
        self.offset = _read_lines(log, self.offset, handle_line)
        self.head = _head(log)

    def to_json(self) -> dict[str, Any]:
        return {"inode": self.inode, "offset": self.offset, "head": self.head.hex()}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LogPosition:
        inode = raw.get("inode")
        return cls(
            None if inode is None else int(inode),
            int(raw.get("offset", 0)),
            bytes.fromhex(str(raw.get("head", ""))),
        )


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(_HEAD)


def _read_lines(path: Path, offset: int, handle_line: Callable[[bytes], None]) -> int:
    """Hand over the whole lines from `offset`; the offset after the last one."""
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
    for line in data[:end].splitlines():
        handle_line(line)
    return offset + end


# ---------------------------------------------------------------------------
# Cumulative counters of one backend


@dataclass
class Tally:
    """Cumulative counters of one backend, from its log lines: they only grow.

    Every counted request adds one latency to the histogram, so
    `latency.total == requests`. Latencies are added in batches (`settle`),
    which `histogram()` and `to_json()` do first.
    """

    requests: int = 0
    classes: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # 2xx, 3xx, 4xx, 5xx
    latency: Histogram = field(default_factory=Histogram.empty)
    pending_ms: list[float] = field(default_factory=list)

    def count(self, status: int, millis: float) -> None:
        """One request with its status and latency (ms, >= 0)."""
        self.requests += 1
        if 200 <= status < 600:
            self.classes[status // 100 - 2] += 1
        self.pending_ms.append(millis)

    def count_latency(self, millis: float) -> None:
        """One latency only (for a source whose requests are counted elsewhere)."""
        self.pending_ms.append(millis)

    def settle(self) -> None:
        if self.pending_ms:
            self.latency = self.latency.add_samples(self.pending_ms)
            self.pending_ms = []

    def histogram(self) -> Histogram:
        self.settle()
        return self.latency

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "status": list(self.classes),
            "latency_ms": self.histogram().to_dict(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Tally:
        classes = [int(n) for n in raw.get("status", [0, 0, 0, 0])]
        if len(classes) != 4:
            raise ValueError("a tally has four status classes")
        return cls(
            requests=int(raw.get("requests", 0)),
            classes=classes,
            latency=Histogram.from_dict(raw.get("latency_ms") or {}),
        )


def valid_latency(value: object, scale: float = 1.0) -> float | None:
    """`value` (a number or a string) times `scale` as milliseconds; None when not a latency."""
    if not isinstance(value, int | float | str | bytes) or isinstance(value, bool):
        return None
    try:
        millis = float(value) * scale
    except ValueError:
        return None
    return millis if math.isfinite(millis) and millis >= 0 else None


# ---------------------------------------------------------------------------
# The recent window, compactly


def _packed(values: array[Any]) -> str:
    if sys.byteorder != "little":
        values = array(values.typecode, values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def _unpacked(typecode: str, text: str) -> array[Any]:
    values = array(typecode)
    values.frombytes(base64.b64decode(text, validate=True))
    if sys.byteorder != "little":
        values.byteswap()
    return values


class Window:
    """The last `size` requests of a route (or an HAProxy backend): (address, ms) pairs.

    Kept as two arrays (an index into `addresses`, and the latency), so that
    appending, trimming and saving cost next to nothing whatever the size.

    >>> w = Window(2)
    >>> for address, ms in [("a:1", 1.0), ("b:2", 2.0), ("a:1", 3.0)]:
    ...     w.append(address, ms)
    >>> w.trim(); list(w.rows()), Window.from_json(w.to_json(), 10).quantiles()["a:1"]
    ([('b:2', 2.0), ('a:1', 3.0)], (3.0, 3.0, 3.0))
    """

    def __init__(
        self,
        size: int,
        addresses: list[str] | None = None,
        index: array[int] | None = None,
        millis: array[float] | None = None,
    ) -> None:
        self.size = size
        self.addresses = addresses if addresses is not None else []
        self._ids = {address: i for i, address in enumerate(self.addresses)}
        self.index = index if index is not None else array("I")
        self.millis = millis if millis is not None else array("d")
        self.trim()

    def __len__(self) -> int:
        return len(self.index)

    def append(self, address: str, millis: float) -> None:
        i = self._ids.get(address)
        if i is None:
            i = self._ids[address] = len(self.addresses)
            self.addresses.append(address)
        self.index.append(i)
        self.millis.append(millis)
        if len(self.index) >= 2 * self.size:
            self.trim()

    def trim(self) -> None:
        """Keep the last `size` requests."""
        extra = len(self.index) - self.size
        if extra > 0:
            del self.index[:extra]
            del self.millis[:extra]

    def rows(self) -> Iterator[tuple[str, float]]:
        addresses = self.addresses
        for i, millis in zip(self.index, self.millis, strict=True):
            yield addresses[i], millis

    def without(self, gone: Iterable[str]) -> Window:
        """A copy without the requests of these addresses."""
        dropped = set(gone)
        window = Window(self.size)
        for address, millis in self.rows():
            if address not in dropped:
                window.append(address, millis)
        return window

    def quantiles(self) -> dict[str, tuple[float | None, float | None, float | None]]:
        """(p50, p95, p99) of each address's requests in the window."""
        self.trim()
        by_index: dict[int, list[float]] = {}
        for i, millis in zip(self.index, self.millis, strict=True):
            values = by_index.get(i)
            if values is None:
                values = by_index[i] = []
            values.append(millis)
        quantiles: dict[str, tuple[float | None, float | None, float | None]] = {}
        for i, values in by_index.items():
            values.sort()
            quantiles[self.addresses[i]] = (
                percentile(values, 0.50),
                percentile(values, 0.95),
                percentile(values, 0.99),
            )
        return quantiles

    def to_json(self) -> dict[str, Any]:
        """{"addresses": [...], "index": base64 uint32 LE, "ms": base64 float64 LE}."""
        self.trim()
        if len(set(self.index)) < len(self.addresses):  # addresses gone from the window
            window = Window(self.size)
            for address, millis in self.rows():
                window.append(address, millis)
            self.addresses, self._ids = window.addresses, window._ids
            self.index, self.millis = window.index, window.millis
        return {
            "addresses": list(self.addresses),
            "index": _packed(self.index),
            "ms": _packed(self.millis),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], size: int) -> Window:
        """The window `to_json` saved, cut to `size`; ValueError when damaged."""
        addresses = [str(a) for a in raw["addresses"]]
        index = _unpacked("I", str(raw["index"]))
        millis = _unpacked("d", str(raw["ms"]))
        if len(index) != len(millis) or (index and max(index) >= len(addresses)):
            raise ValueError("the traffic window's columns do not match")
        if len(set(addresses)) != len(addresses):
            raise ValueError("the traffic window names an address twice")
        return cls(size, addresses, index, millis)
