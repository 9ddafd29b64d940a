"""The SSH target's cheap status query (`conveyor.targets.ssh_status`): the on-host program
run here with this python3 against a unix socket answering as supervisord does, and the
sharing of one query per host among the callers that ask at the same time. The real
supervisord on test hosts answers it in tests/targets/test_ssh_target.py."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from conveyor.targets import ssh_programs, ssh_status
from conveyor.targets.base import RUNNING, STOPPED

# What supervisord 4 answers to supervisor.getAllProcessInfo (trimmed to the members
# the query reads, plus one it does not).
ANSWER = b"""<?xml version='1.0'?>
<methodResponse><params><param><value><array><data>
<value><struct>
<member><name>description</name><value><string>pid 4321, uptime 1 day, 2:03:04</string></value></member>
<member><name>pid</name><value><int>4321</int></value></member>
<member><name>name</name><value><string>web-1</string></value></member>
<member><name>group</name><value><string>web-1</string></value></member>
<member><name>statename</name><value><string>RUNNING</string></value></member>
</struct></value>
<value><struct>
<member><name>name</name><value><string>web-2</string></value></member>
<member><name>group</name><value><string>web-2</string></value></member>
<member><name>statename</name><value><string>FATAL</string></value></member>
<member><name>description</name><value><string>Exited too quickly (process log may have details) &amp; more</string></value></member>
</struct></value>
<value><struct>
<member><name>name</name><value><string>worker</string></value></member>
<member><name>group</name><value><string>jobs</string></value></member>
<member><name>statename</name><value><string>STOPPED</string></value></member>
<member><name>description</name><value><string>Not started</string></value></member>
</struct></value>
</data></array></value></param></params></methodResponse>
"""


@pytest.fixture
def control_socket(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A unix socket that answers one XML-RPC request per connection with ANSWER."""
    path = tmp_path / "supervisor.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    requests: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                request = client.recv(65536)
                requests.append(request)
                client.sendall(
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(ANSWER) + ANSWER
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, requests
    server.close()


def run_status(socket_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", "-c", ssh_status.STATUS, str(socket_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_it_prints_what_supervisorctl_status_prints(
    control_socket: tuple[Path, list[bytes]],
) -> None:
    path, requests = control_socket
    done = run_status(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "web-1 RUNNING pid 4321, uptime 1 day, 2:03:04",
        "web-2 FATAL Exited too quickly (process log may have details) & more",
        "jobs:worker STOPPED Not started",
    ]
    assert b"supervisor.getAllProcessInfo" in requests[0]
    found = ssh_programs.parse_status(done.stdout, 200_000.0)
    assert found["web-1"].state == RUNNING and found["web-1"].pid == 4321
    assert found["web-1"].started_at == 200_000.0 - (86400 + 2 * 3600 + 3 * 60 + 4)
    assert found["web-2"].state == "fatal" and found["web-2"].detail.startswith("Exited")
    assert found["jobs:worker"].state == STOPPED


def test_no_supervisord_prints_nothing(tmp_path: Path) -> None:
    done = run_status(tmp_path / "no.sock")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_argv_lists_the_program_files_then_the_status() -> None:
    argv = ssh_status.status_argv(PurePosixPath("/h/p"), PurePosixPath("/h/run/s.sock"))
    assert argv[:2] == ["sh", "-c"] and argv[3:5] == ["sh", "/h/p"]
    assert argv[5:8] == ["python3", "-S", "-c"] and argv[9] == "/h/run/s.sock"


def test_callers_at_the_same_time_share_one_query() -> None:
    async def scenario() -> None:
        shared: ssh_status.SharedQueries[int] = ssh_status.SharedQueries()
        asked: list[str] = []
        gate = asyncio.Event()

        async def query(host: str) -> int:
            asked.append(host)
            await gate.wait()
            return len(asked)

        waiting = [asyncio.create_task(shared.get("h1", lambda: query("h1"))) for _ in range(3)]
        other = asyncio.create_task(shared.get("h2", lambda: query("h2")))
        await asyncio.sleep(0.01)
        waiting[0].cancel()  # one caller gives up: the others still get the answer
        gate.set()
        assert await asyncio.gather(*waiting[1:]) == [2, 2] and await other == 2
        assert asked == ["h1", "h2"]
        # Once answered, the next caller asks again (nothing is cached).
        assert await shared.get("h1", lambda: query("h1")) == 3

        async def failing() -> int:
            raise OSError("host h1 is unreachable")

        with pytest.raises(OSError, match="unreachable"):
            await shared.get("h1", failing)

    asyncio.run(scenario())
