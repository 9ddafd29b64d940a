"""Choosing a free port for an instance on this machine."""

from __future__ import annotations

import secrets
import socket

from conveyor.errors import TargetError


def free_local_port(interface: str, taken: set[int], ports: range) -> int:
    """A port of `ports` (the config's `ports`) that is free on `interface` and not taken.

    Ports from the kernel's ephemeral range (what binding port 0 hands out) can
    be taken at any moment by an outgoing connection, e.g. Caddy's to an
    upstream: the default range stays below it.
    """
    start = secrets.randbelow(len(ports))
    for offset in range(len(ports)):
        port = ports[(start + offset) % len(ports)]
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((interface, port))
            except OSError:
                continue
        return port
    raise TargetError(
        f"no free TCP port on {interface} in {ports.start}-{ports.stop - 1}",
        hint="widen `ports` in conveyor.yml (or stop what holds them)",
    )
