"""One router per listen address: who else listens there, checked before a router starts.

Caddy and HAProxy both listen with SO_REUSEPORT, so a second one on the same
address starts without an error and the kernel splits the connections between
them: a stray router (started by hand, or left by an older home) would serve
a share of the requests with routes Conveyor no longer knows about.
"""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.errors import RouterError
from conveyor.targets.listening import named_listeners, other_listeners

__all__ = ["listen_port", "refuse_other_listeners"]


def listen_port(listen: str) -> int | None:
    """The port of a `[host]:port` listen address; None when it has none."""
    _, _, port = listen.rpartition(":")
    return int(port) if port.isdigit() else None


def refuse_other_listeners(router: str, listens: Iterable[str], own: int | None = None) -> None:
    """Raise RouterError naming every process that listens on one of `listens`.

    `own` is the pid of the router's program when it runs (supervised programs
    lead their process group): the processes of its group are the router itself.
    """
    for listen in sorted(set(listens)):
        port = listen_port(listen)
        if port is None:
            continue
        holders = other_listeners(port, own)
        if holders == []:
            continue  # nothing, or only the router itself
        stop = f"stop it (kill {' '.join(map(str, holders))})" if holders else "stop it"
        raise RouterError(
            f"{router}: another program already listens on {listen}: "
            f"{named_listeners(holders)}; starting the router too would "
            "split the requests between them",
            hint=f"{stop} and retry, or change the environment's listen address",
        )
