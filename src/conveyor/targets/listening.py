"""Which addresses a TCP port listens on, from the kernel's tables (/proc/net/tcp, tcp6).

Instances are told `HOST=127.0.0.1`, but some servers ignore it (Express's
`app.listen(PORT)` binds every interface): the instance is then reachable
from other machines without the router in front. Reading the kernel's socket
tables tells which addresses a port is bound to, without any tool installed
and for any process.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

PROC_NET = Path("/proc/net")
_LISTEN = "0A"  # TCP_LISTEN in include/net/tcp_states.h


def _address(hex_address: str) -> str:
    """The text form of a /proc/net address: 32-bit words in host (little-endian) order.

    >>> _address("0100007F")
    '127.0.0.1'
    >>> _address("00000000000000000000000001000000")
    '::1'
    """
    raw = bytes.fromhex(hex_address)
    data = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(data))


def parse_listeners(lines: Iterable[str], port: int) -> list[str]:
    """The local addresses of the sockets in `lines` (a /proc/net/tcp or tcp6 table) that
    listen on `port`, in table order."""
    found: list[str] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN or ":" not in fields[1]:
            continue
        hex_address, hex_port = fields[1].rsplit(":", 1)
        try:
            if int(hex_port, 16) != port:
                continue
            found.append(_address(hex_address))
        except ValueError:
            continue  # the header line, or a format this code does not know
    return found


def listening_addresses(port: int, proc_net: Path = PROC_NET) -> list[str]:
    """Every local address a TCP socket listens on at `port` (IPv4 then IPv6); empty when
    nothing listens or the tables cannot be read (not Linux)."""
    found: list[str] = []
    for table in ("tcp", "tcp6"):
        try:
            text = (proc_net / table).read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        found += parse_listeners(text.splitlines(), port)
    return found


def all_interfaces(addresses: Iterable[str]) -> list[str]:
    """The wildcard addresses among `addresses` ("0.0.0.0", "::"): listening on every
    interface, not only on loopback."""
    return [a for a in addresses if ipaddress.ip_address(a).is_unspecified]
