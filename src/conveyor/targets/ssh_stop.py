"""Stopping an instance on a host in one round trip (was four).

`supervisorctl stop`, then waiting until the program's whole process group has
exited (children of the program, a server under a shell, may outlive its own
process; SIGKILL to the group after the stop timeout), then removing its program
files and `supervisorctl update` (supervisord forgets it): one shell script on
the host, the supervisorctl command line given as its trailing arguments. Pure:
nothing here touches the network.

The group is signalled as `kill -0 "-PGID"`: dash (Debian's /bin/sh) refuses
`kill -0 -- -PGID` ("Illegal number: -"), which made the wait a no-op before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

# sh -c STOP sh NAME PGID LIMIT CONF LAUNCH SUPERVISORCTL...  (PGID empty: not running;
# LIMIT: 50 ms ticks before SIGKILL). Prints nothing; always exits 0, as the four
# commands it replaces were not checked either.
STOP = (
    'name=$1 g=$2 limit=$3 conf=$4 launch=$5; shift 5; "$@" stop "$name" >/dev/null 2>&1; '
    'if [ -n "$g" ]; then n=0; while kill -0 "-$g" 2>/dev/null; do n=$((n+1)); '
    '[ "$n" -gt "$limit" ] && kill -9 "-$g" 2>/dev/null; sleep 0.05; done; fi; '
    'rm -f "$conf" "$launch"; "$@" update "$name" >/dev/null 2>&1; true'
)


def stop_argv(
    name: str,
    pid: int | None,
    timeout: float,
    conf: PurePosixPath,
    launch: PurePosixPath,
    supervisorctl: Sequence[str],
) -> list[str]:
    """argv that stops program `name` (whose process group is `pid`'s, when it runs),
    waits `timeout` seconds at most for the group, and removes the program."""
    return [
        "sh",
        "-c",
        STOP,
        "sh",
        name,
        str(pid) if pid else "",
        str(int(timeout * 20) + 1),
        str(conf),
        str(launch),
        *supervisorctl,
    ]
