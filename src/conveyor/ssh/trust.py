"""`conveyor hosts trust ENV`: fetch each host's key (without logging in) and say how
it compares with what the Conveyor home's known_hosts records.

Hosts behind a jump host can only be asked once the jump host is trusted, so the
hosts come in rounds (`rounds`): first those reached directly, then those behind
them. Recording is the CLI's job, after it showed the fingerprints and was told
yes (`known_hosts.record`).
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.concurrently import every
from conveyor.errors import TargetError
from conveyor.ssh import known_hosts
from conveyor.ssh.connection import Connections
from conveyor.ssh.hosts import HostSpec


def key_status(offered: str, recorded: list[str]) -> str:
    """ "trusted" when the offered key is recorded, "changed" when others are, else "unknown"."""
    wanted = " ".join(offered.split()[:2])
    if wanted in recorded:
        return "trusted"
    return "changed" if recorded else "unknown"


@dataclass(frozen=True)
class OfferedKey:
    """A host's key and its standing; `key` None when the host could not be asked."""

    host: HostSpec
    key: str | None
    status: str  # "trusted" | "unknown" | "changed" | "unreachable"
    recorded: tuple[str, ...] = ()
    error: str | None = None

    @property
    def fingerprint(self) -> str | None:
        return known_hosts.fingerprint(self.key) if self.key else None

    @property
    def recorded_fingerprints(self) -> list[str]:
        return [known_hosts.fingerprint(k) for k in self.recorded]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.host.name,
            "address": self.host.address,
            "port": self.host.port,
            "status": self.status,
            "fingerprint": self.fingerprint,
            "recorded": self.recorded_fingerprints,
            "error": self.error,
        }


def rounds(hosts: list[HostSpec]) -> list[list[HostSpec]]:
    """The hosts in rounds: each host comes after the round of its jump host."""
    depth: dict[str, int] = {}

    def hops(host: HostSpec) -> int:
        if host.name not in depth:
            depth[host.name] = 0 if host.jump is None else hops(host.jump) + 1
        return depth[host.name]

    result: list[list[HostSpec]] = []
    for host in hosts:
        level = hops(host)
        while len(result) <= level:
            result.append([])
        result[level].append(host)
    return result


async def offered_keys(connections: Connections, hosts: list[HostSpec]) -> list[OfferedKey]:
    """Each host's key and standing, asked in parallel."""
    return list(await every(*(_offered(connections, h) for h in hosts)))


async def _offered(connections: Connections, host: HostSpec) -> OfferedKey:
    try:
        key = await connections.host_key(host)
    except TargetError as error:
        return OfferedKey(host, None, "unreachable", error=error.message)
    recorded = known_hosts.recorded(connections.known_hosts_file, host.key_name)
    return OfferedKey(host, key, key_status(key, recorded), tuple(recorded))
