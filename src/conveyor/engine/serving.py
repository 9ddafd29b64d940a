"""Does what serves match what the store says? Checked by `conveyor status`.

The store says which releases an environment runs and on which ports its
instances listen; the kernel says which processes listen on those ports. They
disagree when a router or an instance Conveyor does not run (an orphan of a
supervisord killed with SIGKILL, a program started by hand) holds an
address, when nothing listens where something should, or when a stopped
environment still accepts connections. `gather` reads the machine,
`mismatches` compares (pure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.paths import Paths

__all__ = ["Holder", "answers", "gather", "mismatches", "router_pids", "wait_closed"]

ROUTER_OWNERS = ("caddy", "haproxy")


@dataclass(frozen=True)
class Holder:
    """A process that listens on a port."""

    pid: int
    pgid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})"


def _port(listen: str) -> int | None:
    _, _, port = listen.rpartition(":")
    return int(port) if port.isdigit() else None


def _ports(report: Mapping[str, Any]) -> list[int]:
    listen = _port(str(report["listen"])) if _router_here(report) else None
    ports = [p for p in [listen] if p is not None]
    for service in report["services"]:
        ports += [int(i["port"]) for i in service["instances"] if i["port"] and _here(i)]
    return ports


def _router_here(report: Mapping[str, Any]) -> bool:
    """Whether the environment's router runs on this machine (`router_host: local`)."""
    return bool(report.get("router_host", "local") == "local")


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether something accepts a TCP connection at the URL's host and port (the router
    on another host, which this machine's kernel cannot be asked about)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _here(instance: Mapping[str, Any]) -> bool:
    """Whether the instance runs on this machine (its ports are this kernel's to check)."""
    return bool(instance.get("host", "local") == "local")


def gather(reports: Iterable[Mapping[str, Any]]) -> dict[int, list[Holder]]:
    """Port -> who listens there, for the listen and instance ports of `reports`."""
    import os

    from conveyor.targets.listening import listening_pids_by_port

    ports = [p for report in reports for p in _ports(report)]
    found: dict[int, list[Holder]] = {}
    for port, pids in listening_pids_by_port(ports).items():
        for pid in pids:
            try:
                pgid = os.getpgid(pid)
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # exited meanwhile
            command = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
            found.setdefault(port, []).append(Holder(pid, pgid, command or "?"))
    return found


async def wait_closed(listen: str, timeout: float) -> list[Holder]:
    """Wait (up to `timeout` seconds) until nothing listens on `listen`; who still does."""
    import asyncio
    import time

    from conveyor.targets.listening import listening_inodes

    port = _port(listen)
    if port is None:
        return []
    deadline = time.monotonic() + timeout
    while listening_inodes(port):
        if time.monotonic() >= deadline:
            fake = {"listen": listen, "services": []}
            return gather([fake]).get(port) or [Holder(0, 0, "a process of another user")]
        await asyncio.sleep(0.05)
    return []


def router_pids(paths: Paths) -> set[int]:
    """The pids of the routers the home's supervisord runs (empty when it does not run)."""
    if not paths.supervisor_socket.exists():
        return set()
    from conveyor.targets.supervisor import Supervisor

    try:
        programs = Supervisor(paths).all_programs()
    except Exception:
        return set()
    return {p.status.pid for p in programs if p.owner in ROUTER_OWNERS and p.status.pid}


def mismatches(
    report: Mapping[str, Any],
    holders: Mapping[int, list[Holder]],
    routers: set[int],
    router_answers: bool | None = None,
) -> list[str]:
    """What differs between the environment's status `report` (see engine.status) and
    the processes listening on its ports. `routers`: pids of Conveyor's routers;
    `router_answers`: whether the router on another host accepts connections at the
    environment's URL (`answers`)."""
    found: list[str] = []
    listen = str(report["listen"])
    port = _port(listen)
    deployed = [(s["name"], s["release"]) for s in report["services"] if s["release"]]
    if not _router_here(report):
        if deployed and router_answers is False:
            service, release = deployed[0]
            found.append(
                f"nothing answers at {report['url']} (the router on host "
                f"{report['router_host']}), where {service} {release} should serve"
            )
    elif port is not None:
        on_listen = holders.get(port, [])
        for holder in on_listen:
            if holder.pgid not in routers:
                found.append(
                    f"{holder} listens on {listen} but is not Conveyor's router: requests "
                    "may reach a release Conveyor does not know about"
                )
        if deployed and not on_listen:
            service, release = deployed[0]
            found.append(f"nothing listens on {listen}, where {service} {release} should serve")
        if not deployed and any(h.pgid in routers for h in on_listen):
            found.append(f"{listen} still accepts connections although nothing is deployed")
    for service in report["services"]:
        for inst in service["instances"]:
            if inst["state"] != "serving" or not inst["port"]:
                continue
            if not _here(inst):
                if inst["process"] == "missing":
                    found.append(
                        f"instance {inst['name']} does not run on {inst['host']}: its "
                        "supervisord there has no such program"
                    )
                continue
            on_port = holders.get(int(inst["port"]), [])
            others = [h for h in on_port if h.pgid != inst["pid"]]
            for holder in others:
                found.append(
                    f"{holder} listens on port {inst['port']} of instance {inst['name']} "
                    "but is not that instance"
                )
            if not on_port:
                found.append(f"nothing listens on port {inst['port']} of instance {inst['name']}")
    return found
