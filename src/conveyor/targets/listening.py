"""Which addresses a TCP port listens on, from the kernel's tables (/proc/net/tcp, tcp6).

Instances are told `HOST=127.0.0.1`, but some servers ignore it (Express's
`app.listen(PORT)` binds every interface): the instance is then reachable
from other machines without the router in front. Reading the kernel's socket
tables tells which addresses a port is bound to, without any tool installed
and for any process.
"""

from __future__ import annotations

import ipaddress
import os
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


def _listening_inodes(ports: set[int], proc_net: Path) -> dict[int, int]:
    """Inode -> port of the TCP sockets listening on one of `ports` (IPv4 and IPv6)."""
    found: dict[int, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            text = (proc_net / table).read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN or ":" not in fields[1]:
                continue
            try:
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port in ports:
                    found[int(fields[9])] = port
            except ValueError:
                continue  # the header line
    return found


def listening_ports(ports: Iterable[int], proc_net: Path = PROC_NET) -> set[int]:
    """Those of `ports` that a TCP socket listens on (any address, IPv4 and IPv6)."""
    return set(_listening_inodes(set(ports), proc_net).values())


def listening_inodes(port: int, proc_net: Path = PROC_NET) -> set[int]:
    """The inodes of the TCP sockets listening on `port` (any address, IPv4 and IPv6)."""
    return set(_listening_inodes({port}, proc_net))


def listening_pids_by_port(
    ports: Iterable[int], proc: Path = Path("/proc")
) -> dict[int, list[int]]:
    """Port -> the processes holding a socket that listens on it (sorted; none: absent).

    One scan of /proc: every process of this user (all of them as root). A listener
    of a process this user cannot see is left out.
    """
    inodes = _listening_inodes(set(ports), proc / "net")
    if not inodes:
        return {}
    wanted = {f"socket:[{inode}]": port for inode, port in inodes.items()}
    found: dict[int, set[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # gone, or not ours
        for fd in fds:
            try:
                port = wanted.get(str(fd.readlink()))
            except OSError:
                continue
            if port is not None:
                found.setdefault(port, set()).add(int(entry.name))
    return {port: sorted(pids) for port, pids in found.items()}


def listening_pids(port: int, proc: Path = Path("/proc")) -> list[int]:
    """The processes holding a socket that listens on TCP `port`, sorted (see above)."""
    return listening_pids_by_port([port], proc).get(port, [])


def command_line(pid: int, proc: Path = Path("/proc")) -> str:
    """The command line of process `pid`, spaces between the arguments ("?" when gone)."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or "?"


def named_listeners(pids: list[int] | None) -> str:
    """`other_listeners`' answer for a message: "pid 42 (caddy run), ...", or who it is
    when this user cannot see it."""
    return ", ".join(f"pid {p} ({command_line(p)})" for p in pids or ()) or (
        "a process of another user"
    )


def other_listeners(port: int, group: int | None) -> list[int] | None:
    """The processes listening on TCP `port` outside process group `group` (a program
    supervisord starts leads its group; None: any process counts).

    Empty when nothing else listens; None when a listener belongs to a process this
    user cannot see (another user's).
    """
    if not listening_inodes(port):
        return []
    visible = listening_pids(port)
    if not visible:
        return None
    return [pid for pid in visible if group is None or _group_of(pid) != group]


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
