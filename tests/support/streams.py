"""Read a running process's output line by line and wait for a line, with a deadline."""

from __future__ import annotations

import queue
import threading
from typing import IO


class Lines:
    """Collects the lines of `stream` on a thread; `wait_for` blocks until one matches."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """The first line (from now on) containing `text`; fails at the end of the stream
        or after `timeout` seconds, showing what was seen."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} in {timeout}s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the output ended without {text!r}: {self.seen}")
            self.seen.append(line)
            if text in line:
                return line

    def rest(self, timeout: float = 60) -> str:
        """Everything seen, once the stream has ended."""
        self._thread.join(timeout)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.seen.append(line)
        return "".join(self.seen)
