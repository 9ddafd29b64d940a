"""`conveyor hosts ENV`: is each host ready to run instances?

Per host, in parallel: reachable (its sshd answers), its host key (trusted,
unknown or changed against the Conveyor home's known_hosts), supervisord of the
project up, the free disk space of the project's directory and the clock skew
(the host's `date +%s.%N` against this machine's clock at the middle of the
round trip). A host with any problem makes the command exit non-zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from conveyor.concurrently import every
from conveyor.errors import TargetError
from conveyor.ssh import known_hosts
from conveyor.ssh.connection import Connections
from conveyor.ssh.hosts import HostSpec
from conveyor.ssh.layout import RemoteLayout
from conveyor.ssh.trust import key_status

COMMAND_TIMEOUT = 20.0
MIN_DISK_FREE = 1024**3  # bytes: less is a problem (releases are shipped there)
MAX_CLOCK_SKEW = 1.0  # seconds: more is a problem (logs, history and analyses compare times)


@dataclass
class HostHealth:
    """What `conveyor hosts` found on one host."""

    host: HostSpec
    reachable: bool = False
    host_key: str | None = None  # "trusted" | "unknown" | "changed"; None: not reached
    fingerprint: str | None = None
    supervisord: str | None = None  # "up" | "down" | "not set up"; None: not logged in
    disk_free: int | None = None  # bytes
    clock_skew: float | None = None  # seconds, host minus this machine
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.host.name,
            "address": self.host.address,
            "port": self.host.port,
            "user": self.host.user,
            "ok": self.ok,
            "reachable": self.reachable,
            "host_key": self.host_key,
            "fingerprint": self.fingerprint,
            "supervisord": self.supervisord,
            "disk_free_bytes": self.disk_free,
            "clock_skew_seconds": (
                round(self.clock_skew, 3) if self.clock_skew is not None else None
            ),
            "problems": self.problems,
        }


def parse_df(output: str) -> int | None:
    """Available bytes from `df -Pk PATH` output (POSIX format, 1024-byte blocks)."""
    lines = output.strip().splitlines()
    if len(lines) < 2:
        return None
    fields = lines[-1].split()
    if len(fields) < 4 or not fields[3].isdigit():
        return None
    return int(fields[3]) * 1024


def clock_skew(remote: str, sent: float, received: float) -> float | None:
    """The host's clock minus ours, taking ours at the middle of the round trip."""
    try:
        return float(remote.strip()) - (sent + received) / 2
    except ValueError:
        return None


def problems(health: HostHealth) -> list[str]:
    """What is wrong with a host, worded with what to do."""
    found = []
    if health.host_key == "unknown":
        found.append("its host key is not trusted yet: run `conveyor hosts trust ENV`")
    elif health.host_key == "changed":
        found.append(
            "its host key has CHANGED since it was trusted: find out why before "
            "`conveyor hosts trust ENV`"
        )
    if health.supervisord == "not set up":
        found.append("Conveyor is not set up there: run `conveyor setup ENV`")
    elif health.supervisord == "down":
        found.append("supervisord is not running: `conveyor setup ENV` starts it")
    if health.disk_free is not None and health.disk_free < MIN_DISK_FREE:
        found.append(f"only {health.disk_free // 1024**2} MiB free for the project")
    if health.clock_skew is not None and abs(health.clock_skew) > MAX_CLOCK_SKEW:
        found.append(f"its clock is {health.clock_skew:+.1f} s off this machine's: run NTP")
    return found


async def check_hosts(
    connections: Connections, hosts: list[HostSpec], layout: RemoteLayout
) -> list[HostHealth]:
    """Every host checked, in parallel; one result per host, in order."""
    return list(await every(*(check_host(connections, h, layout) for h in hosts)))


async def check_host(connections: Connections, host: HostSpec, layout: RemoteLayout) -> HostHealth:
    health = HostHealth(host)
    try:
        await _check(connections, host, layout, health)
    except TargetError as error:
        # "host web1 (...) is unreachable: ..." -> "unreachable: ...": the host is named
        # beside the problem.
        problem = error.message.removeprefix(f"host {host.describe()}").lstrip(": ")
        health.problems.append(problem.removeprefix("is "))
        return health
    health.problems.extend(problems(health))
    return health


async def _check(
    connections: Connections, host: HostSpec, layout: RemoteLayout, health: HostHealth
) -> None:
    offered = await connections.host_key(host)
    health.reachable = True
    health.fingerprint = known_hosts.fingerprint(offered)
    recorded = known_hosts.recorded(connections.known_hosts_file, host.key_name)
    health.host_key = key_status(offered, recorded)
    if health.host_key != "trusted":
        return

    async def run(argv: list[str]) -> tuple[int, str]:
        done = await connections.run(host, argv, timeout=COMMAND_TIMEOUT)
        return done.exit_status, done.stdout

    await connections.connection(host)  # log in once, before the clock is read
    sent = time.time()
    date = await run(["date", "+%s.%N"])
    received = time.time()
    health.clock_skew = clock_skew(date[1], sent, received) if date[0] == 0 else None
    df, installed, pid = await every(
        run(["sh", "-c", 'df -Pk -- "$1" 2>/dev/null || df -Pk .', "sh", str(layout.home)]),
        run(["test", "-f", str(layout.supervisor_conf)]),
        run(layout.supervisorctl("pid")),
    )
    health.disk_free = parse_df(df[1]) if df[0] == 0 else None
    if pid[0] == 0 and pid[1].strip().isdigit():
        health.supervisord = "up"
    else:
        health.supervisord = "down" if installed[0] == 0 else "not set up"
