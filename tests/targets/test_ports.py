"""Choosing instance ports: two Conveyor processes on one machine never hand out the
same port, even before the instance it was chosen for listens. Real sockets, real
processes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.errors import TargetError
from conveyor.targets.ports import free_local_port

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net and abstract sockets"
)

INTERFACE = "127.0.0.1"

# What another Conveyor process does: choose a port of the range, print it or the error.
OTHER_PROCESS = """
import sys
from conveyor.errors import TargetError
from conveyor.targets.ports import free_local_port
start, stop = int(sys.argv[1]), int(sys.argv[2])
try:
    print(free_local_port("127.0.0.1", set(), range(start, stop)))
except TargetError as error:
    print("error:", error.message)
"""


def other_process_chooses(ports: range) -> str:
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, str(ports.start), str(ports.stop)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def unused_port_range() -> range:
    """One port of the instance range (20000-29999) that nothing uses now."""
    for port in range(29_999, 20_000, -7):
        with socket.socket() as sock:
            try:
                sock.bind((INTERFACE, port))
            except OSError:
                continue
        with socket.socket(socket.AF_UNIX) as claim:
            try:
                claim.bind(f"\0conveyor/port/{INTERFACE}:{port}".encode())
            except OSError:
                continue
        return range(port, port + 1)
    pytest.skip("no unused port in 20000-29999")


def test_a_port_chosen_by_one_process_is_not_chosen_by_another_before_it_listens() -> None:
    ports = unused_port_range()
    port = free_local_port(INTERFACE, set(), ports)
    assert port == ports.start
    # Nothing listens on it yet, but another process does not get it.
    assert other_process_chooses(ports) == (
        f"error: no free TCP port on {INTERFACE} in {port}-{port}"
    )
    # This process does not hand it out twice either.
    with pytest.raises(TargetError):
        free_local_port(INTERFACE, set(), ports)

    # Once the instance listens, the claim goes (the bind test refuses the port now);
    # once the instance is gone, the port is free for everyone.
    with socket.socket() as instance:
        instance.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        instance.bind((INTERFACE, port))
        instance.listen()
        with pytest.raises(TargetError):
            free_local_port(INTERFACE, set(), ports)
    assert other_process_chooses(ports) == str(port)


def test_the_claim_of_a_process_that_exits_goes_with_it() -> None:
    ports = unused_port_range()
    assert other_process_chooses(ports) == str(ports.start)
    assert free_local_port(INTERFACE, set(), ports) == ports.start
    with socket.socket() as instance:  # let this process's claim go
        instance.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        instance.bind((INTERFACE, ports.start))
        instance.listen()
        with pytest.raises(TargetError):
            free_local_port(INTERFACE, set(), ports)
