"""Where a host is and how to log in to it (from an environment's `hosts:`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostSpec:
    """One host an environment runs on."""

    name: str  # as conveyor.yml calls it; what every message shows
    address: str  # DNS name or IP address sshd listens on
    user: str
    port: int = 22
    identity: Path | None = None  # private key; None: the agent and ~/.ssh's keys
    jump: HostSpec | None = None  # a bastion to go through
    roles: tuple[str, ...] = ()  # which services it carries (conveyor.config.hosts)

    def describe(self) -> str:
        """`web1 (deploy@10.0.0.5:22)`: the name and where it is."""
        via = f" via {self.jump.name}" if self.jump is not None else ""
        return f"{self.name} ({self.user}@{self.address}:{self.port}{via})"

    @property
    def key_name(self) -> str:
        """The host's name in a known_hosts file: `addr`, or `[addr]:port` off port 22."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"
