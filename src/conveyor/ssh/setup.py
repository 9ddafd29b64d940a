"""`conveyor setup ENV`: prepare each host, as its normal user, idempotently.

On each host: check python3 (>= 3.8), create the project's directories
(`RemoteLayout`, mode 0700), ship the `supervisor` package from the deployer's own
installation into `lib/` (a tar over SFTP, without its tests), write
supervisord.conf and start supervisord unless it runs. A host is first probed
(`probe`), then `plan` (pure) says what is missing, and only that is done; a
second run finds nothing to do. What needs root (installing python3) is never
done: it is printed as the command to run.
"""

from __future__ import annotations

import asyncio
import re
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from conveyor.concurrently import every
from conveyor.errors import TargetError
from conveyor.ssh import batch
from conveyor.ssh.connection import COMMAND_TIMEOUT, Connections
from conveyor.ssh.hosts import HostSpec
from conveyor.ssh.layout import ROOT, RemoteLayout

MIN_PYTHON = (3, 8)
SUPERVISORD_WAIT = 15.0  # seconds a freshly started supervisord has to answer
PYTHON_VERSION = ["python3", "-S", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]
INSTALL_PYTHON = "apt-get install -y python3  (or your distribution's python3 package)"
_CONF_VALUE = re.compile(r"[^\n;#]*")


@dataclass(frozen=True)
class Probe:
    """What a host has of the project's setup."""

    home: str  # the login user's home, absolute
    python: tuple[int, ...] | None  # python3's version; None: no python3
    modes: dict[str, int]  # each existing layout directory -> its permission bits
    conf: str | None  # supervisord.conf as it is on the host
    lib_version: str | None  # version of the shipped supervisor package
    supervisord_up: bool


@dataclass(frozen=True)
class Plan:
    """What setup does on one host, in order; empty when it is set up."""

    make_dirs: tuple[str, ...] = ()
    fix_modes: tuple[str, ...] = ()
    ship_supervisor: bool = False
    write_conf: bool = False
    start_supervisord: bool = False
    conf_changed_while_running: bool = False

    @property
    def nothing_to_do(self) -> bool:
        return not (
            self.make_dirs
            or self.fix_modes
            or self.ship_supervisor
            or self.write_conf
            or self.start_supervisord
        )


@dataclass
class HostSetup:
    """What setup did on one host."""

    host: HostSpec
    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    as_root: list[str] = field(default_factory=list)  # commands for someone with root
    error: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.as_root

    def to_json(self) -> dict[str, object]:
        return {
            "host": self.host.name,
            "ok": self.ok,
            "done": self.done,
            "notes": self.notes,
            "as_root": self.as_root,
            "error": self.error,
        }


def directories(layout: RemoteLayout) -> list[PurePosixPath]:
    """The directories setup makes, parents first."""
    return [
        ROOT,
        layout.home,
        layout.lib,
        layout.releases,
        layout.home / "data",
        layout.home / "logs",
        layout.instance_logs,
        layout.supervisor_dir,
        layout.programs_dir,
        layout.run_dir,
    ]


def supervisord_conf(layout: RemoteLayout, home: str) -> str:
    """The supervisord.conf of the project on a host whose login home is `home`."""
    base = PurePosixPath(home)

    def at(path: PurePosixPath) -> str:
        value = str(base / path)
        if not _CONF_VALUE.fullmatch(value) or " " in value:
            raise TargetError(
                f"the path {value!r} cannot be written into a supervisord config file",
                hint="log in as a user whose home has no spaces, ';', '#' or newlines",
            )
        return value

    socket = at(layout.supervisor_socket)
    return "\n".join(
        [
            "; Written by `conveyor setup`; edits are lost at the next setup.",
            "[unix_http_server]",
            f"file={socket}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={at(layout.supervisor_dir / 'supervisord.log')}",
            "logfile_maxbytes=10MB",
            "logfile_backups=2",
            "loglevel=info",
            f"pidfile={at(layout.supervisor_dir / 'supervisord.pid')}",
            f"childlogdir={at(layout.instance_logs)}",
            f"directory={at(layout.home)}",
            "umask=077",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{socket}",
            "",
            "[include]",
            f"files = {at(layout.programs_dir)}/*.conf",
            "",
        ]
    )


def plan(probe: Probe, layout: RemoteLayout, lib_version: str) -> Plan:
    """What is missing on a probed host (python3 is checked before: see `python_problem`)."""
    wanted = [str(d) for d in directories(layout)]
    conf = supervisord_conf(layout, probe.home)
    ship = probe.lib_version != lib_version
    write = probe.conf != conf
    return Plan(
        make_dirs=tuple(d for d in wanted if d not in probe.modes),
        fix_modes=tuple(d for d in wanted if d in probe.modes and probe.modes[d] != 0o700),
        ship_supervisor=ship,
        write_conf=write,
        start_supervisord=not probe.supervisord_up,
        conf_changed_while_running=probe.supervisord_up and (write or ship),
    )


def python_problem(version: tuple[int, ...] | None) -> str | None:
    if version is None:
        return "python3 is not installed"
    if version[:2] < MIN_PYTHON:
        shown = ".".join(map(str, version))
        return f"python3 is {shown}; supervisord needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later"
    return None


def local_supervisor() -> tuple[Path, str]:
    """The deployer's own `supervisor` package directory and its version."""
    import supervisor

    package = Path(supervisor.__file__).parent
    return package, (package / "version.txt").read_text().strip()


def supervisor_tar(package: Path, into: Path) -> Path:
    """`supervisor/` as a tar (gzip) without tests and bytecode."""
    archive = into / "supervisor.tar.gz"

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = PurePosixPath(info.name).parts
        if "tests" in parts or "__pycache__" in parts or info.name.endswith(".pyc"):
            return None
        return info

    with tarfile.open(archive, "w:gz") as tar:
        tar.add(package, arcname="supervisor", filter=keep)
    return archive


async def probe(connections: Connections, host: HostSpec, layout: RemoteLayout) -> Probe:
    """What the host has, asked in one SSH session (`conveyor.ssh.batch`)."""
    marker = batch.new_marker()
    parts = {
        "home": ["pwd"],
        "python": PYTHON_VERSION,
        "stat": ["stat", "-c", "%a %n", "--", *map(str, directories(layout))],
        "conf": ["cat", "--", str(layout.supervisor_conf)],
        "lib": ["cat", "--", str(layout.lib / "supervisor" / "version.txt")],
        "pid": layout.supervisorctl("pid"),
    }
    done = await connections.run(host, batch.batch_argv(parts, marker), timeout=COMMAND_TIMEOUT)
    found = batch.parse_batch(done.stdout, marker)
    home, python, stat, conf, lib, pid = (found.get(name, (255, "")) for name in parts)
    version = None
    if python[0] == 0 and re.fullmatch(r"[0-9]+(\.[0-9]+)*\n?", python[1]):
        version = tuple(int(n) for n in python[1].strip().split("."))
    modes = {}
    for line in stat[1].splitlines():
        mode, _, name = line.partition(" ")
        modes[name] = int(mode, 8)
    return Probe(
        home=home[1].strip(),
        python=version,
        modes=modes,
        conf=conf[1] if conf[0] == 0 else None,
        lib_version=lib[1].strip() if lib[0] == 0 else None,
        supervisord_up=pid[0] == 0 and pid[1].strip().isdigit(),
    )


async def setup_hosts(
    connections: Connections, hosts: list[HostSpec], layout: RemoteLayout
) -> list[HostSetup]:
    """Prepare every host, in parallel; one result per host, in order."""
    package, version = local_supervisor()
    with tempfile.TemporaryDirectory(prefix="conveyor-setup-") as tmp:
        archive = supervisor_tar(package, Path(tmp))
        return list(
            await every(
                *(setup_host(connections, host, layout, archive, version) for host in hosts)
            )
        )


async def setup_host(
    connections: Connections, host: HostSpec, layout: RemoteLayout, archive: Path, version: str
) -> HostSetup:
    """Prepare one host; failures end up in the result (naming the host), not raised."""
    result = HostSetup(host)
    try:
        await _setup(connections, result, layout, archive, version)
    except TargetError as error:
        result.error, result.hint = error.message, error.hint
    return result


async def ensure_host(connections: Connections, host: HostSpec, layout: RemoteLayout) -> None:
    """What a deployment needs before it starts anything on a host: the host is set up
    (as `conveyor setup` does it, doing only what is missing: a rebooted host gets its
    supervisord back). Raises `TargetError`, naming the host, when it cannot be."""
    package, version = local_supervisor()
    with tempfile.TemporaryDirectory(prefix="conveyor-setup-") as tmp:
        result = HostSetup(host)
        await _setup(
            connections, result, layout, lambda: supervisor_tar(package, Path(tmp)), version
        )
    if result.as_root:
        raise TargetError(
            f"host {host.describe()}: {'; '.join(result.notes)}",
            hint=f"as root on {host.name}, run: {result.as_root[0]}",
        )


async def _setup(
    connections: Connections,
    result: HostSetup,
    layout: RemoteLayout,
    archive: Path | Callable[[], Path],
    version: str,
) -> None:
    host = result.host

    async def run(argv: list[str], what: str, input: str | None = None) -> str:
        done = await connections.run(host, argv, timeout=COMMAND_TIMEOUT, input=input)
        if done.exit_status != 0:
            output = (done.stderr or done.stdout).strip().splitlines()
            raise TargetError(
                f"host {host.describe()}: {what} failed (exit {done.exit_status})"
                + (f": {output[-1]}" if output else "")
            )
        return done.stdout

    found = await probe(connections, host, layout)
    problem = python_problem(found.python)
    if problem is not None:
        result.notes.append(problem)
        result.as_root.append(INSTALL_PYTHON)
        return
    todo = plan(found, layout, version)
    if todo.make_dirs:
        await run(["mkdir", "-p", "--", *todo.make_dirs], "creating the directories")
        result.done.append(f"created {_count(todo.make_dirs, 'directory')} (0700): {layout.home}")
    if todo.make_dirs or todo.fix_modes:
        await run(["chmod", "700", "--", *todo.make_dirs, *todo.fix_modes], "chmod 700")
        if todo.fix_modes:
            result.done.append(f"made {', '.join(todo.fix_modes)} private (0700)")
    if todo.ship_supervisor:
        remote = str(layout.lib / ".supervisor.tar.gz")
        local = archive if isinstance(archive, Path) else await asyncio.to_thread(archive)
        await connections.put(host, local, remote)
        await run(["sh", "-c", _UNPACK, "sh", remote, str(layout.lib)], "unpacking supervisor")
        result.done.append(f"installed supervisor {version} in {layout.lib}")
    if todo.write_conf:
        conf = supervisord_conf(layout, found.home)
        await run(["sh", "-c", _WRITE, "sh", str(layout.supervisor_conf)], "writing", conf)
        result.done.append(f"wrote {layout.supervisor_conf}")
    if todo.start_supervisord:
        await run(layout.supervisord(found.home), "starting supervisord")
        pid = await _answer(connections, host, layout)
        result.done.append(f"started supervisord (pid {pid})")
    elif todo.conf_changed_while_running:
        result.notes.append(
            "supervisord runs with its previous configuration; it takes the new one when "
            "it restarts (setup does not restart it: its instances would stop)"
        )


async def _answer(connections: Connections, host: HostSpec, layout: RemoteLayout) -> str:
    """The pid of the supervisord just started, once it answers on its socket (it
    daemonizes first, so the first tries may find no socket yet)."""
    deadline = time.monotonic() + SUPERVISORD_WAIT
    while True:
        done = await connections.run(host, layout.supervisorctl("pid"), timeout=COMMAND_TIMEOUT)
        if done.exit_status == 0 and done.stdout.strip().isdigit():
            return done.stdout.strip()
        if time.monotonic() > deadline:
            said = (done.stdout + done.stderr).strip().splitlines()
            raise TargetError(
                f"host {host.describe()}: supervisord did not answer after starting"
                + (f": {said[-1]}" if said else ""),
                hint=f"see {layout.supervisor_dir}/supervisord.log on the host",
            )
        await asyncio.sleep(0.1)


def _count(items: tuple[str, ...], noun: str) -> str:
    return f"{len(items)} {noun if len(items) == 1 else noun.removesuffix('y') + 'ies'}"


# Writes stdin to "$1" through a temporary file; nobody else may read it.
_WRITE = 'umask 077 && cat > "$1.tmp" && mv -f -- "$1.tmp" "$1"'
# Unpacks the tar "$1" into the directory "$2" as "$2/supervisor", replacing it.
_UNPACK = (
    'set -e; rm -rf -- "$2/.incoming"; mkdir -m 700 -- "$2/.incoming"; '
    'tar -xzf "$1" -C "$2/.incoming"; rm -rf -- "$2/supervisor"; '
    'mv -- "$2/.incoming/supervisor" "$2/supervisor"; rm -rf -- "$2/.incoming" "$1"'
)


__all__ = [
    "HostSetup",
    "Plan",
    "Probe",
    "directories",
    "ensure_host",
    "local_supervisor",
    "plan",
    "probe",
    "python_problem",
    "setup_host",
    "setup_hosts",
    "supervisord_conf",
]
