"""Choosing a free port for an instance on this machine.

A port is free when nothing listens on it, but an instance binds it only a
moment after Conveyor chose it: another Conveyor process (another project's
home, a second deploy) could choose it in between, and the health check of
one instance would then be answered by the other's. So the chosen port is
also *claimed*: an abstract Unix socket named after it, which every process
of this machine (network namespace) sees, no file and no permission stands
in the way of, and the kernel removes when the holder exits. A port another
process claims is not chosen. The claim is let go once the port listens (the
bind test then refuses it anyway) or after `CLAIM_SECONDS`.
"""

from __future__ import annotations

import errno
import secrets
import socket
import threading
import time

from conveyor.errors import TargetError
from conveyor.targets.listening import listening_ports

CLAIM_SECONDS = 30 * 60.0  # longer than any deploy_timeout people set
_claims: dict[tuple[str, int], tuple[socket.socket, float]] = {}
_claims_lock = threading.Lock()


def claim_name(interface: str, port: int) -> bytes:
    """The abstract socket name of a claim (a leading NUL: not a file)."""
    return f"\0conveyor/port/{interface}:{port}".encode()


def _claim(interface: str, port: int) -> socket.socket | None:
    """Claim `port` for this process; None when another process holds the claim. Where
    there are no abstract sockets (not Linux) the socket stays unbound: no claim."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(claim_name(interface, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            sock.close()
            return None
    return sock


def _let_go_of_settled_claims(now: float) -> None:
    """Close the claims of ports that listen by now, and of old ones."""
    if not _claims:
        return
    listening = listening_ports({port for _, port in _claims})
    for key, (sock, since) in list(_claims.items()):
        if key[1] in listening or now - since > CLAIM_SECONDS:
            sock.close()
            del _claims[key]


def free_local_port(interface: str, taken: set[int], ports: range) -> int:
    """A port of `ports` (the config's `ports`) that is free on `interface`, not taken,
    and not claimed by another process; this process claims it (see the module).

    Ports from the kernel's ephemeral range (what binding port 0 hands out) can
    be taken at any moment by an outgoing connection, e.g. Caddy's to an
    upstream: the default range stays below it.
    """
    with _claims_lock:
        _let_go_of_settled_claims(time.monotonic())
        start = secrets.randbelow(len(ports))
        for offset in range(len(ports)):
            port = ports[(start + offset) % len(ports)]
            if port in taken or (interface, port) in _claims:
                continue
            claim = _claim(interface, port)
            if claim is None:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((interface, port))
                except OSError:
                    claim.close()
                    continue
            _claims[(interface, port)] = (claim, time.monotonic())
            return port
    raise TargetError(
        f"no free TCP port on {interface} in {ports.start}-{ports.stop - 1}",
        hint="widen `ports` in conveyor.yml (or stop what holds them)",
    )
