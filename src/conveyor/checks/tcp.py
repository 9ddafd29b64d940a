"""TCP check: the port accepts a connection."""

from __future__ import annotations

import asyncio
import contextlib
import time

from conveyor.checks.base import CheckResult


class TcpCheck:
    """A TCP connection to `host:port` opens within `timeout` seconds."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"TcpCheck({self.host!r}, {self.port}, timeout={self.timeout})"

    async def run(self) -> CheckResult:
        """Open and close one connection; never raises for a failing target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        head = f"TCP {host}:{self.port} ->"
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            duration = time.perf_counter() - start
            return CheckResult(False, f"{head} timed out after {self.timeout:g} s", duration)
        except ConnectionRefusedError:
            return CheckResult(False, f"{head} connection refused", time.perf_counter() - start)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            return CheckResult(False, f"{head} {reason}", time.perf_counter() - start)
        duration = time.perf_counter() - start
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return CheckResult(True, f"{head} connected in {duration * 1000:.0f} ms", duration)
