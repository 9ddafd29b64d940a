"""Reading which addresses a port listens on from /proc/net, checked on real sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.targets.listening import all_interfaces, listening_addresses, parse_listeners

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net"
)


def _listen(family: socket.AddressFamily, host: str, port: int = 0) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    sock.listen()
    return sock


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_a_loopback_listener_is_not_on_all_interfaces(sockets):
    sockets.append(_listen(socket.AF_INET, "127.0.0.1"))
    port = sockets[0].getsockname()[1]
    assert listening_addresses(port) == ["127.0.0.1"]
    assert all_interfaces(listening_addresses(port)) == []


def test_a_wildcard_listener_is_on_all_interfaces(sockets):
    sockets.append(_listen(socket.AF_INET, "0.0.0.0"))
    port = sockets[0].getsockname()[1]
    assert all_interfaces(listening_addresses(port)) == ["0.0.0.0"]


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_listeners_loopback_and_wildcard(sockets):
    try:
        sockets.append(_listen(socket.AF_INET6, "::1"))
    except OSError:
        pytest.skip("IPv6 loopback unavailable")
    port = sockets[0].getsockname()[1]
    assert listening_addresses(port) == ["::1"]
    assert all_interfaces(listening_addresses(port)) == []
    sockets.append(_listen(socket.AF_INET6, "::"))
    wildcard = sockets[1].getsockname()[1]
    assert listening_addresses(wildcard) == ["::"]
    assert all_interfaces(listening_addresses(wildcard)) == ["::"]


def test_a_connected_socket_and_nothing_at_all_are_not_listeners(sockets):
    server = _listen(socket.AF_INET, "127.0.0.1")
    sockets.append(server)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    sockets.append(client)
    accepted, _ = server.accept()
    sockets.append(accepted)
    assert listening_addresses(client.getsockname()[1]) == []  # established, not listening
    server.close()
    assert listening_addresses(port) == []


def test_the_table_format():
    table = [
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid",
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0",
        "   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0",
        "   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  0",
        "   3: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0",
        "garbage",
    ]
    assert parse_listeners(table, 8080) == ["127.0.0.1", "0.0.0.0"]
    assert listening_addresses(8080, Path("/nonexistent")) == []
