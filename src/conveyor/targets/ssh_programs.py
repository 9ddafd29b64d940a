"""What the SSH target sends to a host and how it reads the answers: pure functions.

Program files for the host's supervisord (the same launcher as the local target:
the program becomes the launcher's pid and gets SIGTERM when supervisord dies),
the remote side of `reserve` and of one-off commands,
and `supervisorctl status` parsed. Nothing here touches the network; the
commands are argv lists (`Connections.run` quotes them once for the remote shell).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from conveyor.errors import TargetError
from conveyor.targets import program_conf
from conveyor.targets.base import INSTANCE_OWNER, STOPPED, UNKNOWN, InstanceStatus
from conveyor.targets.supervisor import _STATES

# Which interpreter runs the launcher on the host (supervisord's own, found on PATH).
REMOTE_PYTHON = "python3"


@dataclass(frozen=True)
class Program:
    """The files that make one instance a supervisord program on a host."""

    conf: str  # programs/<name>.conf, mode 0600 (it may hold secrets)
    launch: str | None  # programs/<name>.launch.json when supervisor's syntax cannot carry it


def render_program(
    name: str,
    command: Sequence[str],
    cwd: PurePosixPath,
    env: Mapping[str, str],
    log: PurePosixPath,
    stop_timeout: float,
    launch_path: PurePosixPath,
    owner: str = INSTANCE_OWNER,
    stop_signal: str = "TERM",
    stop_as_group: bool = True,
) -> Program:
    """The program conf of an instance; every path absolute on the host, the launcher run
    by the host's python3 (it runs as the login user: no user switch)."""
    conf, launch = program_conf.render_program(
        program_conf.ProgramConf(
            name=name,
            command=tuple(command),
            cwd=cwd,
            env=env,
            log=log,
            stop_timeout=stop_timeout,
            python=REMOTE_PYTHON,
            launch_path=launch_path,
            owner=owner,
            stop_signal=stop_signal,
            stop_as_group=stop_as_group,
        )
    )
    return Program(conf, launch)


# -- reserve --------------------------------------------------------------------

# Tries to bind each candidate port on the interface, prints the first free one.
# Prints the first of the ports (argv 2...) that can be bound on the address (argv 1;
# empty: every address), nothing when all are in use; any other error (an address the host
# does not have, a port below 1024) ends it with the error on stderr. SO_REUSEADDR, as
# servers bind: a port whose last connections wait in TIME_WAIT is free to listen on.
_FREE_PORT = (
    "import errno,socket,sys\n"
    "h=sys.argv[1] or '0.0.0.0'\n"
    "for p in sys.argv[2:]:\n"
    "    s=socket.socket(socket.AF_INET6 if ':' in h else socket.AF_INET)\n"
    "    s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "    try:\n"
    "        s.bind((h,int(p)))\n"
    "    except OSError as e:\n"
    "        if e.errno!=errno.EADDRINUSE:\n"
    "            sys.exit(e.strerror)\n"
    "        continue\n"
    "    finally:\n"
    "        s.close()\n"
    "    print(p)\n"
    "    break\n"
)


def free_port_argv(interface: str, candidates: Sequence[int]) -> list[str]:
    """argv that prints the first of `candidates` free on `interface` of the host (nothing
    when none is)."""
    return [REMOTE_PYTHON, "-S", "-c", _FREE_PORT, interface, *map(str, candidates)]


# -- one-off commands -------------------------------------------------------------

# The variables come on stdin as `export K='v'` lines, never on a command line; the
# service's DATA_DIR is made (0700) when missing, as an instance's start makes it.
_WITH_ENV = (
    'set -a; . /dev/stdin; set +a; [ -z "$DATA_DIR" ] || (umask 077; mkdir -p "$DATA_DIR"); '
    'cd "$1" || exit 127; shift; exec "$@"'
)


def command_argv(
    command: Sequence[str], cwd: PurePosixPath, home: PurePosixPath, timeout: float | None
) -> list[str]:
    """argv of a one-off command on a host: a clean environment (read from stdin, see
    `env_script`), in `cwd`, stderr into stdout, killed with its group after `timeout`."""
    limit = ["timeout", "-k", "5", f"{max(1, math.ceil(timeout))}"] if timeout else []
    return [
        "env",
        "-i",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "LANG=C.UTF-8",
        f"HOME={home}",
        *limit,
        "sh",
        "-c",
        _WITH_ENV + " 2>&1",
        "sh",
        str(cwd),
        *command,
    ]


def env_script(env: Mapping[str, str]) -> str:
    """`export` lines a POSIX shell reads back into exactly `env` (fed on stdin)."""
    bad = [k for k in env if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
    if bad:
        raise TargetError(
            f"invalid environment variable names {bad}",
            hint="use letters, digits and underscores, not starting with a digit",
        )
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())


# -- supervisorctl status ---------------------------------------------------------

_STATUS_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<state>[A-Z]+)\s*(?P<rest>.*)$")
_RUNNING = re.compile(
    r"pid (?P<pid>\d+), uptime (?:(?P<days>\d+) days?, )?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d)"
)


def parse_status(output: str, now: float) -> dict[str, InstanceStatus]:
    """`supervisorctl status` lines by program name (`now`: the epoch, to date a start)."""
    found: dict[str, InstanceStatus] = {}
    for line in output.splitlines():
        match = _STATUS_LINE.match(line.strip())
        if match is None or match["state"] not in _STATES or "ERROR" in line.split()[1:2]:
            continue
        name, state, rest = match["name"], match["state"], match["rest"].strip()
        pid: int | None = None
        started: float | None = None
        detail = rest
        running = _RUNNING.search(rest)
        if running is not None:
            pid = int(running["pid"])
            up = (
                int(running["days"] or 0) * 86400
                + int(running["h"]) * 3600
                + int(running["m"]) * 60
                + int(running["s"])
            )
            started = now - up
            detail = ""
        if state == "STOPPING":
            detail = f"stopping ({detail})" if detail else "stopping"
        found[name] = InstanceStatus(
            name=name,
            state=_STATES.get(state, UNKNOWN),
            pid=pid,
            started_at=started,
            detail=detail,
        )
    return found


def configured_only(name: str) -> InstanceStatus:
    """A program whose file is on the host but which supervisord has not loaded."""
    return InstanceStatus(name=name, state=STOPPED, detail="configured, but not loaded")


def supervisord_gone(output: str) -> bool:
    """Whether supervisorctl's output says that no supervisord answers on its socket (the
    socket is missing or refuses connections: supervisord was killed or never started);
    not a program's own `ERROR (no such file)`."""
    return (
        re.search(r"unix://\S+ (refused connection|no such file)", output) is not None
        or "ConnectionRefusedError" in output
    )
