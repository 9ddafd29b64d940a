"""HttpCheck, TcpCheck and CommandCheck against real servers and processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from conveyor.checks.command import CommandCheck
from conveyor.checks.http import HttpCheck
from conveyor.checks.tcp import TcpCheck
from conveyor.checks.wait import host_header


def test_http_ok(http_server):
    result = asyncio.run(HttpCheck(f"{http_server.base}/ok").run())
    assert result.ok
    assert result.detail.startswith(f"GET {http_server.base}/ok -> 200 in ")
    assert result.detail.endswith(" ms")


def test_http_expected_status_other_than_200(http_server):
    assert asyncio.run(HttpCheck(f"{http_server.base}/created", expect_status=201).run()).ok


def test_http_wrong_status_names_status_and_body(http_server):
    result = asyncio.run(HttpCheck(f"{http_server.base}/fail").run())
    assert not result.ok
    assert f"GET {http_server.base}/fail -> 503 in " in result.detail
    assert result.detail.endswith("(expected 200): database unreachable")


def test_http_redirect_is_not_followed(http_server):
    result = asyncio.run(HttpCheck(f"{http_server.base}/redirect").run())
    assert not result.ok
    assert "-> 302 in " in result.detail
    assert "location: /ok" in result.detail
    assert "/ok" not in http_server.hits


def test_http_connection_refused(free_port):
    url = f"http://127.0.0.1:{free_port}/health"
    result = asyncio.run(HttpCheck(url).run())
    assert not result.ok
    assert result.detail == f"GET {url} -> connection refused"


def test_http_timeout_of_slow_server(http_server):
    # /slow hangs for a minute: ignoring the timeout would take that long.
    start = time.monotonic()
    result = asyncio.run(HttpCheck(f"{http_server.base}/slow", timeout=0.3).run())
    assert time.monotonic() - start < 15
    assert not result.ok
    assert result.detail == f"GET {http_server.base}/slow -> timed out after 0.3 s"


def test_http_ignores_proxy_environment(http_server, monkeypatch, free_port):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port}")
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{free_port}")
    assert asyncio.run(HttpCheck(f"{http_server.base}/ok").run()).ok


def test_tcp_ok():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        result = asyncio.run(TcpCheck("127.0.0.1", port).run())
    assert result.ok
    assert result.detail.startswith(f"TCP 127.0.0.1:{port} -> connected in ")


def test_tcp_refused(free_port):
    result = asyncio.run(TcpCheck("127.0.0.1", free_port).run())
    assert not result.ok
    assert result.detail == f"TCP 127.0.0.1:{free_port} -> connection refused"


def test_tcp_timeout_when_backlog_is_full():
    # Linux drops SYNs once a listener's accept queue is full; connect then hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                fillers.append(s)
            time.sleep(0.1)
            result = asyncio.run(TcpCheck("127.0.0.1", port, timeout=0.3).run())
        finally:
            for s in fillers:
                s.close()
    assert not result.ok
    assert result.detail == f"TCP 127.0.0.1:{port} -> timed out after 0.3 s"


def test_command_ok(tmp_path):
    argv = [sys.executable, "-c", "import os; print('first'); print('cwd', os.getcwd())"]
    result = asyncio.run(CommandCheck(argv, cwd=tmp_path).run())
    assert result.ok
    assert " -> exit 0 in " in result.detail
    assert result.detail.endswith(f": cwd {tmp_path}")


def test_command_failure_reports_exit_code_and_last_line(tmp_path):
    script = "echo checking; echo 'db: connection refused' >&2; echo; exit 3"
    result = asyncio.run(CommandCheck(["/bin/sh", "-c", script], cwd=tmp_path).run())
    assert not result.ok
    assert result.detail.startswith(f"{script} -> exit 3 in ")
    assert result.detail.endswith(" ms: db: connection refused")


def test_command_env_is_added_to_the_inherited_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_PARENT", "parent")
    check = CommandCheck(
        ["/bin/sh", "-c", 'echo "$FROM_PARENT $EXTRA"'], cwd=tmp_path, env={"EXTRA": "extra"}
    )
    result = asyncio.run(check.run())
    assert result.ok
    assert result.detail.endswith(": parent extra")


def test_command_timeout_kills_the_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    # The shell starts a child that would outlive a kill of the shell alone; without the
    # timeout, the check would wait the minute of its sleep. The timeout runs from the
    # shell's start: 1 s is time enough for it to write the pid file and say "waiting".
    script = f"sleep 60 & echo $! > {pidfile}; echo waiting; wait"
    start = time.monotonic()
    result = asyncio.run(CommandCheck(["/bin/sh", "-c", script], timeout=1).run())
    assert time.monotonic() - start < 15
    assert not result.ok
    assert result.detail.endswith("-> timed out after 1 s, killed: waiting")
    child = int(pidfile.read_text())
    assert not _alive(child)


def test_command_leftover_background_child_does_not_hang_the_check(tmp_path):
    pidfile = tmp_path / "child.pid"
    # Waiting for the child's end of the output would take the minute of the timeout.
    script = f"sleep 60 & echo $! > {pidfile}; echo started"
    start = time.monotonic()
    result = asyncio.run(CommandCheck(["/bin/sh", "-c", script], timeout=60).run())
    assert time.monotonic() - start < 15
    assert result.ok
    assert result.detail.endswith(": started")
    assert not _alive(int(pidfile.read_text()))


def test_command_cancelled_from_outside_kills_the_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"

    async def main() -> None:
        check = CommandCheck(["/bin/sh", "-c", script], timeout=30)
        task = asyncio.create_task(check.run())
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.02)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not _alive(int(pidfile.read_text()))


def test_command_that_cannot_start(tmp_path):
    result = asyncio.run(CommandCheck([str(tmp_path / "missing")]).run())
    assert not result.ok
    assert result.detail == f"{tmp_path / 'missing'} -> cannot run: No such file or directory"


def _alive(pid: int, wait: float = 2.0) -> bool:
    # The killed child may need a moment to be reaped by init.
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        status = Path(f"/proc/{pid}/stat")
        try:
            if status.read_text().split(") ")[1].startswith("Z"):
                return False  # a zombie is dead, just not yet reaped
        except (FileNotFoundError, IndexError):
            return False
        time.sleep(0.05)
    return True


def test_an_instance_on_another_host_is_asked_with_this_machines_host_header(
    http_server: Any,
) -> None:
    port = int(http_server.base.rsplit(":", 1)[1])
    # On this machine the URL's Host goes; for a host's address, 127.0.0.1:PORT.
    assert host_header("127.0.0.1", port) is None
    assert host_header("10.77.0.11", port) == f"127.0.0.1:{port}"
    asked_by_address = HttpCheck(f"{http_server.base}/host", host_header=f"10.77.0.11:{port}")
    assert not asyncio.run(asked_by_address.run()).ok  # what a host allow-list does
    as_here = HttpCheck(f"{http_server.base}/host", host_header=host_header("10.77.0.11", port))
    assert asyncio.run(as_here.run()).ok
