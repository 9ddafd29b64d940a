"""The test hosts of scripts/testhosts for a test module: up before, down after.

One set of hosts exists per `CONVEYOR_TESTHOSTS_SET` (fixed namespace and user
names), so a lock file per set serializes the test modules (and test processes)
that use it; two test runs on one machine take different sets.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor.ssh.hosts import HostSpec

REPO = Path(__file__).resolve().parents[2]
TESTHOSTS = REPO / "scripts" / "testhosts"


def host_set() -> int:
    """This process's set of test hosts (`CONVEYOR_TESTHOSTS_SET`, 0 to 9)."""
    return int(os.environ.get("CONVEYOR_TESTHOSTS_SET", "0") or "0")


def lock_path() -> Path:
    """The lock of this process's set of test hosts."""
    number = host_set()
    return Path(f"/run/conveyor-testhosts{'-' + str(number) if number else ''}.lock")


def expected_host(index: int) -> tuple[str, str, str]:
    """The name, address and user `scripts/testhosts` gives host `index` (from 1) of this
    process's set: `host1`, `10.77.K.11`, `cvhost1` (set 0) or `cvKhost1`."""
    number = host_set()
    user = f"cv{number}host{index}" if number else f"cvhost{index}"
    return f"host{index}", f"10.77.{number}.{10 + index}", user


def namespace_prefix() -> str:
    """The prefix of this set's network namespaces and bridge (`cvt-`, `cvtK-`)."""
    number = host_set()
    return f"cvt{number or ''}-"


@dataclass(frozen=True)
class Inventory:
    """What `scripts/testhosts up` wrote."""

    path: Path
    identity: Path
    known_hosts: Path
    hosts: list[dict[str, str]]

    def spec(self, index: int, **changes: object) -> HostSpec:
        host = self.hosts[index]
        fields: dict[str, object] = {
            "name": host["name"],
            "address": host["address"],
            "user": host["user"],
            "port": int(host["port"]),
            "identity": self.identity,
            **changes,
        }
        return HostSpec(**fields)  # type: ignore[arg-type]


def available() -> str | None:
    """Why test hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "test hosts need root (network namespaces, users, sshd)"
    if not Path("/usr/sbin/sshd").exists():
        return "test hosts need openssh-server (./scripts/bootstrap installs it)"
    return None


@contextmanager
def hosts_up(count: int, directory: Path, *, timeout: float = 120) -> Iterator[Inventory]:
    reason = available()
    if reason is not None:
        pytest.skip(reason)
    env = {**os.environ, "CONVEYOR_TESTHOSTS_DIR": str(directory)}
    with lock_path().open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            out = subprocess.run(
                [str(TESTHOSTS), "up", str(count)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
                timeout=timeout,
            ).stdout
            path = Path(out.split("CONVEYOR_TESTHOSTS=")[1].split()[0])
            data = json.loads(path.read_text())
            yield Inventory(path, Path(data["identity"]), Path(data["known_hosts"]), data["hosts"])
        finally:
            subprocess.run([str(TESTHOSTS), "down"], env=env, capture_output=True, timeout=timeout)
