"""A small typed client that owns one supervisord per Conveyor home.

Layout under `paths.supervisor_dir`:

* `supervisord.conf` - rewritten by `ensure_running()` before each start.
* `programs/<name>.conf` - one `[program:<name>]` per `add_program()`; included
  by supervisord, so a restarted supervisord (after a reboot) brings them back.
  The first line is a `; conveyor-meta: {json}` comment holding the owner and
  the log path. Mode 0600: environments hold secrets.
* `programs/<name>.launch.json` - only for argv/environments that supervisor's
  config syntax cannot carry losslessly (see `conveyor.targets.program_conf.LAUNCHER`).
* `events/<name>` - one line per exit of the program that nobody asked for,
  appended by the event listener below; its line count is the restart count.
* `supervisord.log`, `supervisord.pid`, `ensure.lock`.

The XML-RPC socket is `paths.supervisor_socket` (mode 0700).

Restarts are counted with supervisor's own event mechanism: an
`[eventlistener:conveyor-events]` (this module run with `-m`) subscribes to
PROCESS_STATE and records PROCESS_STATE_EXITED (the process died while
RUNNING) and PROCESS_STATE_BACKOFF (it died while STARTING). It also wakes
supervisord as soon as a program exits (see `_wake_on_exits`). A stop requested through
XML-RPC goes STOPPING -> STOPPED and emits neither, so every line is an exit
nobody asked for. supervisord buffers events while the listener is busy or
restarting, so none is missed by polling gaps, and nothing depends on the
format or rotation of supervisord's log. `add_program()` truncates the file,
so the count starts when the program is added.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.environ import minimal_environment
from conveyor.errors import TargetError
from conveyor.paths import Paths
from conveyor.printable import printable
from conveyor.redaction import redact_registered
from conveyor.runas import RunUser
from conveyor.targets import orphans
from conveyor.targets.base import (
    BACKOFF,
    EXITED,
    FATAL,
    RUNNING,
    STARTING,
    STOPPED,
    UNKNOWN,
    InstanceStatus,
)
from conveyor.targets.program_conf import (
    ENV_KEY_RE,
    META_PREFIX,
    ProgramConf,
    command_value,
    path_value,
    render_environment,
    render_program,
)

__all__ = [
    "EVENT_LISTENER",
    "ProgramInfo",
    "Supervisor",
    "check_program_name",
    "supervisord_executable",
]

EVENT_LISTENER = "conveyor-events"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_POLL = 0.02
ORPHAN_GRACE = 10.0  # seconds an orphan gets between SIGTERM and SIGKILL

# supervisord state name -> Target state. STOPPING is reported as STOPPED: the
# process is on its way out and must not be counted as serving.
_STATES = {
    "STOPPED": STOPPED,
    "STARTING": STARTING,
    "RUNNING": RUNNING,
    "BACKOFF": BACKOFF,
    "STOPPING": STOPPED,
    "EXITED": EXITED,
    "FATAL": FATAL,
    "UNKNOWN": UNKNOWN,
}
_STOPPED_STATES = frozenset({"STOPPED", "EXITED", "FATAL"})


@dataclass(frozen=True)
class ProgramInfo:
    """A program of this home as supervisord and its conf file describe it."""

    status: InstanceStatus
    owner: str  # as passed to add_program; "" when the conf file is gone
    log_path: Path | None  # stdout (+stderr) log file
    supervisor_state: str  # supervisord's own state name, e.g. "STOPPING"


# The signals supervisord accepts as `stopsignal`.
_STOP_SIGNALS = ("TERM", "HUP", "INT", "QUIT", "KILL", "USR1", "USR2")


def supervisord_environment() -> dict[str, str]:
    """A minimal environment: instances get their variables from conveyor.yml."""
    return minimal_environment()


def supervisord_executable() -> Path:
    """The supervisord of our own environment, else the first on PATH."""
    beside = Path(sys.executable).parent / "supervisord"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("supervisord")
    if found is None:
        raise TargetError(
            f"supervisord not found beside {sys.executable} nor on PATH",
            hint="install Conveyor with its dependencies: pip install conveyor-deploy",
        )
    return Path(found)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over supervisord's unix socket, with a timeout."""

    def __init__(self, socket_path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """XML-RPC over a unix socket, one connection per call.

    The standard library's transport with a unix-socket connection: importing
    supervisor's own costs ~70 ms, which `conveyor status` cannot afford.
    """

    def __init__(self, socket_path: Path, timeout: float) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self.socket_path, self.timeout)


class Faults:
    """The supervisord fault codes this module handles (supervisor.xmlrpc.Faults)."""

    BAD_NAME = 10
    NOT_RUNNING = 70
    ALREADY_STARTED = 60
    ALREADY_ADDED = 90
    STILL_RUNNING = 91
    SHUTDOWN_STATE = 6


class Supervisor:
    """Owns the supervisord of one Conveyor home and talks to it over XML-RPC.

    Thread-safe: every call opens its own connection, so `asyncio.to_thread`
    callers may overlap.
    """

    def __init__(
        self, paths: Paths, *, start_timeout: float = 10.0, rpc_timeout: float = 10.0
    ) -> None:
        self.paths = paths
        self.start_timeout = start_timeout
        self.rpc_timeout = rpc_timeout
        self._start_lock = threading.Lock()
        self.orphan_notes: list[str] = []  # what `ensure_running` found a dead one left
        # Called before supervisord starts (and autostarts its programs); raise to refuse.
        self.preflight: list[Callable[[], None]] = []

    # -- files -------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self.paths.supervisor_dir

    @property
    def conf_path(self) -> Path:
        return self.dir / "supervisord.conf"

    @property
    def log_path(self) -> Path:
        return self.dir / "supervisord.log"

    @property
    def pid_path(self) -> Path:
        return self.dir / "supervisord.pid"

    @property
    def programs_dir(self) -> Path:
        return self.dir / "programs"

    @property
    def events_dir(self) -> Path:
        return self.dir / "events"

    def program_conf_path(self, name: str) -> Path:
        return self.programs_dir / f"{name}.conf"

    def _launch_path(self, name: str) -> Path:
        return self.programs_dir / f"{name}.launch.json"

    def _events_path(self, name: str) -> Path:
        return self.events_dir / name

    # -- XML-RPC -----------------------------------------------------------

    def _proxy(self, timeout: float | None = None) -> xmlrpc.client.ServerProxy:
        transport = _Transport(self.paths.supervisor_socket, timeout or self.rpc_timeout)
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def _call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """One XML-RPC call; socket/protocol errors become TargetError, Faults pass."""
        proxy = self._proxy(timeout)
        try:
            return getattr(proxy, method)(*args)
        except xmlrpc.client.Fault:
            raise
        except (OSError, xmlrpc.client.ProtocolError, xmlrpc.client.ResponseError) as exc:
            raise TargetError(
                f"supervisord at {self.paths.supervisor_socket} did not answer {method}: {exc}",
                hint=f"check {self.log_path}; `conveyor` restarts it on the next deploy",
            ) from exc
        finally:
            with contextlib.suppress(Exception):
                proxy("close")()

    def _fault(self, what: str, fault: xmlrpc.client.Fault) -> TargetError:
        return TargetError(
            f"supervisord ({self.paths.supervisor_socket}) refused to {what}: {fault.faultString}",
            hint=f"see {self.log_path}",
        )

    def is_running(self) -> bool:
        """Whether supervisord answers on the socket and is not shutting down."""
        if not self.paths.supervisor_socket.exists():
            return False
        try:
            state = self._call("supervisor.getState", timeout=2.0)
        except (TargetError, xmlrpc.client.Fault):
            return False
        return isinstance(state, dict) and state.get("statename") == "RUNNING"

    # -- lifecycle ---------------------------------------------------------

    def ensure_running(self) -> None:
        """Start supervisord for this home unless it already answers.

        Safe against concurrent callers (threads and processes): the start
        happens under an exclusive lock on `supervisor_dir/ensure.lock`.
        supervisord daemonizes into its own session, so killing Conveyor (or
        its process group) leaves it and its programs running.
        """
        if self.is_running():
            return
        for directory in (self.dir, self.programs_dir, self.events_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.programs_dir.chmod(0o700)
        self.paths.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._start_lock, self._file_lock():
            if self.is_running():
                return
            self._check_orphan()
            self._stop_orphans()
            for check in self.preflight:
                check()
            self._write_supervisord_conf()
            self._launch()

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        fd = os.open(self.dir / "ensure.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def supervisord_pid(self) -> int | None:
        """The pid of this home's supervisord when it runs (from its pidfile, checked)."""
        return self._supervisord_pid()

    def _supervisord_pid(self) -> int | None:
        """The pid in the pidfile when it is a live supervisord of this home."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.conf_path).encode() in cmdline else None

    def _check_orphan(self) -> None:
        """Refuse to start a second supervisord next to one that lost its socket."""
        pid = self._supervisord_pid()
        if pid is None:
            return
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:  # it may be starting right now
            if self.is_running() or self._supervisord_pid() is None:
                return
            time.sleep(0.1)
        raise TargetError(
            f"supervisord (pid {pid}) of {self.paths.home} is running but its socket "
            f"{self.paths.supervisor_socket} does not answer",
            hint=f"stop it with `kill {pid}` (its programs stop with it), then retry",
        )

    def _stop_orphans(self) -> None:
        """Stop what a supervisord that died without a shutdown left running.

        Its programs would otherwise keep serving next to the ones the new
        supervisord starts (two routers on one address, a stopped release still
        answering). What was stopped is kept in `orphan_notes` for the user.
        """
        try:
            session = int(self.pid_path.read_text().strip())
            written = self.pid_path.stat().st_mtime
        except (OSError, ValueError):
            return
        if session <= 1 or pid_alive(session):
            return  # running (see _check_orphan), or the pid is another process's now
        found = orphans.find_session(session, started_after=written - 2.0)
        if not found:
            self.orphan_notes.append(
                f"supervisord (pid {session}) had died; started it again, and its programs with it"
            )
            return
        left = orphans.stop_all(found, grace=ORPHAN_GRACE)
        gone = [o for o in found if o not in left]
        if left:
            raise TargetError(
                f"supervisord (pid {session}) of {self.paths.home} died and left processes "
                f"running that did not stop on SIGTERM nor SIGKILL: {orphans.describe(left)}",
                hint="stop them by hand (they may serve an old release), then retry",
            )
        self.orphan_notes.append(
            f"supervisord (pid {session}) had died and left {len(gone)} process"
            f"{'es' * (len(gone) != 1)} running; stopped them before starting another: "
            f"{orphans.describe(gone)}"
        )

    def _write_supervisord_conf(self) -> None:
        d = self.dir
        listener = [
            sys.executable,
            "-m",
            "conveyor.targets.supervisor",
            "listen-events",
            str(self.events_dir),
            str(self.paths.supervisor_socket),
        ]
        package_root = str(Path(__file__).resolve().parents[2])
        listener_env = render_environment({"PYTHONPATH": package_root})
        if listener_env is None or command_value(listener) is None:
            raise TargetError(
                f"the paths {sys.executable!r} and {package_root!r} cannot be written "
                "into a supervisord config file",
                hint="install Conveyor under a path without newlines, ' ;' or ' #'",
            )
        sock = self.paths.supervisor_socket
        lines = [
            "; Written by Conveyor before each start of supervisord; edits are lost.",
            "[unix_http_server]",
            f"file={path_value(sock)}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={path_value(d / 'supervisord.log')}",
            "logfile_maxbytes=10MB",
            "logfile_backups=2",
            "loglevel=info",
            f"pidfile={path_value(self.pid_path)}",
            f"childlogdir={path_value(d)}",
            f"directory={path_value(d)}",
            "minfds=256",
            "minprocs=64",
            # Its logs and the instances' (and what the apps write) are their owner's
            # alone: nobody else on the machine reads them.
            "umask=077",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{path_value(sock)}",
            "",
            f"[eventlistener:{EVENT_LISTENER}]",
            f"command={command_value(listener)}",
            f"environment={listener_env}",
            "events=PROCESS_STATE",
            "buffer_size=1024",
            "autorestart=true",
            "startsecs=0",
            "stopwaitsecs=2",
            "stdout_logfile=NONE",  # stdout is the protocol channel
            f"stderr_logfile={path_value(d / 'event-listener.log')}",
            "stderr_logfile_maxbytes=1MB",
            "stderr_logfile_backups=1",
            "",
            "[include]",
            # Relative to this file: [include] splits on whitespace, the home may not.
            "files = programs/*.conf",
            "",
        ]
        _atomic_write(self.conf_path, "\n".join(lines), 0o600)

    def _launch(self) -> None:
        exe = supervisord_executable()
        out_path = self.dir / "supervisord.start.log"
        started = time.monotonic()
        with out_path.open("wb") as out:
            # supervisord forks, setsid()s and its parent exits once the socket
            # is bound; start_new_session also shields that first moment.
            launcher = subprocess.Popen(
                [str(exe), "-c", str(self.conf_path)],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=supervisord_environment(),
            )
            try:
                code = launcher.wait(timeout=self.start_timeout)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()
                code = None
        if code == 0:
            while time.monotonic() - started < self.start_timeout:
                if self.is_running():
                    return
                time.sleep(_POLL)
        raise TargetError(
            f"supervisord for {self.paths.home} did not start within "
            f"{self.start_timeout:g}s (launcher exit code {code})\n"
            + _tail_text(out_path, 10)
            + _tail_text(self.log_path, 20),
            hint=f"fix the problem above, or run `{exe} -n -c {self.conf_path}` to see it",
        )

    def shutdown(self, *, forget_programs: bool = False, timeout: float = 60.0) -> None:
        """Stop supervisord (it stops every program first) and wait until it is gone.

        With `forget_programs`, also delete every program conf so that the next
        `ensure_running()` does not bring them back.
        """
        pid = self._supervisord_pid()
        if self.is_running():
            try:
                self._call("supervisor.shutdown")
            except xmlrpc.client.Fault as fault:
                if fault.faultCode != Faults.SHUTDOWN_STATE:
                    raise self._fault("shut down", fault) from fault
            except TargetError:
                pass  # it went away on its own
        if pid is not None:
            deadline = time.monotonic() + timeout
            while pid_alive(pid):
                if time.monotonic() > deadline:
                    raise TargetError(
                        f"supervisord (pid {pid}) of {self.paths.home} did not exit within "
                        f"{timeout:g}s of shutdown",
                        hint=f"see {self.log_path}; `kill -9 {pid}` if it is stuck",
                    )
                # supervisord notices dead children only when its 1 s poll
                # wakes up; a request wakes it sooner.
                with contextlib.suppress(TargetError, xmlrpc.client.Fault):
                    self._call("supervisor.getState", timeout=0.5)
                time.sleep(_POLL)
        if forget_programs:
            for path in (*self.programs_dir.glob("*.conf"), *self.programs_dir.glob("*.json")):
                path.unlink(missing_ok=True)
            for path in self.events_dir.glob("*"):
                path.unlink(missing_ok=True)

    # -- programs ----------------------------------------------------------

    def add_program(
        self,
        name: str,
        command: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        stdout_log: Path,
        stop_timeout: float,
        *,
        autorestart: bool = True,
        startsecs: int = 1,
        startretries: int = 3,
        owner: str = "",
        stop_signal: str = "TERM",
        user: RunUser | None = None,
        stop_as_group: bool = True,
    ) -> bool:
        """Add and start a program without touching any other; True if it was (re)added.

        No-op (returns False) when a program of that name runs with the same
        config; a stopped one is started again. A different config under the
        same name replaces the program (stop, then add). stderr goes to
        `stdout_log` too; `stop_signal` (SIGTERM unless the program wants
        another, e.g. HAProxy's graceful USR1) reaches the whole process group,
        SIGKILL follows after `stop_timeout` (rounded up to whole seconds). The
        program runs as `user` (None: supervisord's own user).
        """
        check_program_name(name)
        if stop_signal not in _STOP_SIGNALS:
            raise TargetError(
                f"program {name}: unknown stop signal {stop_signal!r}",
                hint=f"use one of {', '.join(_STOP_SIGNALS)}",
            )
        if not command:
            raise TargetError(f"program {name}: the command is empty", hint="give an argv list")
        bad_keys = [k for k in env if not ENV_KEY_RE.fullmatch(k)]
        if bad_keys:
            raise TargetError(
                f"program {name}: invalid environment variable names {bad_keys}",
                hint="use letters, digits and underscores, not starting with a digit",
            )
        if any("\0" in part for part in (*command, *env.values())):
            raise TargetError(f"program {name}: the command or environment contains NUL")
        existing_meta = self._meta(name)
        if existing_meta is not None and existing_meta.get("owner", "") != owner:
            raise TargetError(
                f"program {name} already belongs to {existing_meta.get('owner') or 'someone'}"
                f", not {owner or 'this caller'}",
                hint="pick another name",
            )
        stdout_log.parent.mkdir(parents=True, exist_ok=True)
        conf, launch = self._render_program(
            name,
            list(command),
            cwd,
            dict(env),
            stdout_log,
            stop_timeout,
            autorestart=autorestart,
            startsecs=startsecs,
            startretries=startretries,
            owner=owner,
            stop_signal=stop_signal,
            user=user,
            stop_as_group=stop_as_group,
        )
        self.ensure_running()
        conf_path = self.program_conf_path(name)
        info = self._process_info(name)
        if info is not None:
            same = conf_path.exists() and conf_path.read_text() == conf
            if same:
                if info["statename"] in _STOPPED_STATES:
                    self._start_process(name)
                return False
            self.remove_program(name)

        self._events_path(name).unlink(missing_ok=True)
        if launch is not None:
            _atomic_write(self._launch_path(name), launch, 0o600)
        else:
            self._launch_path(name).unlink(missing_ok=True)
        _atomic_write(conf_path, conf, 0o600)
        try:
            self._call("supervisor.reloadConfig")
        except xmlrpc.client.Fault as fault:
            conf_path.unlink(missing_ok=True)  # never leave a conf that breaks reloads
            self._launch_path(name).unlink(missing_ok=True)
            raise TargetError(
                f"supervisord rejected the config of program {name}: "
                f"{_redact(fault.faultString, env)}",
                hint=f"see {self.log_path}",
            ) from fault
        try:
            self._call("supervisor.addProcessGroup", name)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != Faults.ALREADY_ADDED:  # a concurrent add won
                raise self._fault(f"add program {name}", fault) from fault
        return True

    def _start_process(self, name: str) -> None:
        try:
            self._call("supervisor.startProcess", name, False)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != Faults.ALREADY_STARTED:
                raise self._fault(f"start program {name}", fault) from fault

    def remove_program(self, name: str, timeout: float | None = None) -> bool:
        """Stop the program gracefully and forget it; False if there was none.

        supervisord sends SIGTERM to the process group and SIGKILL after the
        program's `stop_timeout`; a shorter `timeout` here SIGKILLs the group
        earlier.
        """
        check_program_name(name)
        existed = self.program_conf_path(name).exists()
        if self.is_running():
            existed = self._stop_and_remove(name, timeout) or existed
        self.program_conf_path(name).unlink(missing_ok=True)
        self._launch_path(name).unlink(missing_ok=True)
        self._events_path(name).unlink(missing_ok=True)
        if existed and self.is_running():
            # Only tidies supervisord's view of the config: the program is gone
            # already, so another program's broken conf must not fail the stop.
            with contextlib.suppress(xmlrpc.client.Fault):
                self._call("supervisor.reloadConfig")
        return existed

    def _stop_and_remove(self, name: str, timeout: float | None) -> bool:
        for _ in range(5):  # an autorestart may slip in between stop and remove
            info = self._process_info(name)
            if info is None:
                return False
            self._stop(name, info, timeout)
            try:
                self._call("supervisor.removeProcessGroup", name)
                return True
            except xmlrpc.client.Fault as fault:
                if fault.faultCode == Faults.BAD_NAME:
                    return True
                if fault.faultCode != Faults.STILL_RUNNING:
                    raise self._fault(f"remove program {name}", fault) from fault
        raise TargetError(
            f"program {name} kept restarting while supervisord was stopping it",
            hint=f"see {self.log_path}",
        )

    def _stop(self, name: str, info: dict[str, Any], timeout: float | None) -> None:
        if info["statename"] in _STOPPED_STATES:
            return
        try:
            self._call("supervisor.stopProcess", name, False)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode not in (Faults.NOT_RUNNING, Faults.BAD_NAME):
                raise self._fault(f"stop program {name}", fault) from fault
        grace = float((self._meta(name) or {}).get("stop_timeout", 60.0))
        started = time.monotonic()
        killed = False
        while True:
            current = self._process_info(name)
            if current is None or current["statename"] in _STOPPED_STATES:
                group = int(info.get("pid") or 0)
                if group > 0:
                    limit = timeout if timeout is not None else grace
                    self._wait_group_gone(name, group, started + limit)
                return
            elapsed = time.monotonic() - started
            if timeout is not None and elapsed >= timeout and not killed:
                pid = int(current.get("pid") or 0)
                if pid > 0:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)  # supervisor children lead their group
                killed = True
            if elapsed > max(timeout or 0.0, grace) + 15:
                raise TargetError(
                    f"program {name} (pid {current.get('pid')}) did not stop: "
                    f"state {current['statename']}",
                    hint=f"kill it by hand and see {self.log_path}",
                )
            time.sleep(_POLL)

    def _wait_group_gone(self, name: str, group: int, deadline: float) -> None:
        """Wait until no process of the program's process group runs any more.

        supervisord says STOPPED once the program's own process has exited; its
        children (a server under a shell, workers) may still be finishing and
        holding its port. SIGKILL for the group at `deadline`, an error naming
        what is left 5 s later.
        """
        killed = False
        while left := orphans.find_group(group):
            now = time.monotonic()
            if now >= deadline:
                if killed:
                    raise TargetError(
                        f"program {name} stopped, but processes of its group are still "
                        f"running: {orphans.describe(left)}",
                        hint="kill them by hand (`kill -9 PID`); they may still serve",
                    )
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
                killed, deadline = True, now + 5.0
            time.sleep(_POLL)

    def _process_info(self, name: str) -> dict[str, Any] | None:
        try:
            info = self._call("supervisor.getProcessInfo", name)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == Faults.BAD_NAME:
                return None
            raise self._fault(f"describe program {name}", fault) from fault
        return dict(info)

    def program_info(self, name: str) -> ProgramInfo | None:
        """The program's state, or None when this home has no such program."""
        check_program_name(name)
        meta = self._meta(name)
        info = self._process_info(name) if self.is_running() else None
        if info is None and meta is None:
            return None
        return self._to_info(name, info, meta)

    def all_programs(self, owner: str | None = None) -> list[ProgramInfo]:
        """Every program of this home (not the event listener), sorted by name.

        `owner` keeps only those added with that owner.
        """
        infos: dict[str, dict[str, Any]] = {}
        if self.is_running():
            for info in self._call("supervisor.getAllProcessInfo"):
                if info["group"] != EVENT_LISTENER:
                    infos[info["name"]] = dict(info)
        names = set(infos)
        if self.programs_dir.is_dir():
            names.update(p.name[: -len(".conf")] for p in self.programs_dir.glob("*.conf"))
        result = []
        for name in sorted(names):
            meta = self._meta(name)
            if owner is not None and (meta or {}).get("owner", "") != owner:
                continue
            result.append(self._to_info(name, infos.get(name), meta))
        return result

    def program_log(self, name: str) -> Path | None:
        """The log file the program was added with (from its conf), if any."""
        check_program_name(name)
        log = (self._meta(name) or {}).get("log")
        return Path(log) if isinstance(log, str) else None

    def program_owner(self, name: str) -> str | None:
        """The owner the program was added with; None when it has no conf file."""
        check_program_name(name)
        meta = self._meta(name)
        return None if meta is None else str(meta.get("owner", ""))

    def restarts(self, name: str) -> int:
        """Exits of the program nobody asked for since it was added."""
        try:
            with self._events_path(name).open("rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def _to_info(
        self, name: str, info: dict[str, Any] | None, meta: dict[str, Any] | None
    ) -> ProgramInfo:
        meta = meta or {}
        log = meta.get("log")
        log_path = Path(log) if isinstance(log, str) else None
        owner = str(meta.get("owner", ""))
        if info is None:
            detail = (
                "configured, but supervisord is not running"
                if not self.is_running()
                else "configured, but not loaded in supervisord"
            )
            status = InstanceStatus(name=name, state=STOPPED, detail=detail)
            return ProgramInfo(status, owner, log_path, "")
        statename = str(info["statename"])
        state = _STATES.get(statename, UNKNOWN)
        exits = self.restarts(name)
        # The last exit was not followed by a restart when supervisor gave up.
        if state == FATAL or (state == EXITED and meta.get("autorestart") is False):
            exits -= 1
        pid = int(info.get("pid") or 0) or None
        start = float(info.get("start") or 0)
        detail = str(info.get("spawnerr") or info.get("description") or "")
        if statename == "STOPPING":
            detail = f"stopping ({detail})" if detail else "stopping"
        status = InstanceStatus(
            name=name,
            state=state,
            pid=pid,
            started_at=start if pid and start > 0 else None,
            restarts=max(0, exits),
            detail=detail,
        )
        return ProgramInfo(status, owner, log_path, statename)

    def _meta(self, name: str) -> dict[str, Any] | None:
        try:
            with self.program_conf_path(name).open(encoding="utf-8") as f:
                first = f.readline()
        except FileNotFoundError:
            return None
        if first.startswith(META_PREFIX):
            with contextlib.suppress(ValueError):
                meta = json.loads(first[len(META_PREFIX) :])
                if isinstance(meta, dict):
                    return meta
        return {}

    def _render_program(
        self,
        name: str,
        command: list[str],
        cwd: Path,
        env: dict[str, str],
        stdout_log: Path,
        stop_timeout: float,
        *,
        autorestart: bool,
        startsecs: int,
        startretries: int,
        owner: str,
        stop_signal: str,
        user: RunUser | None,
        stop_as_group: bool = True,
    ) -> tuple[str, str | None]:
        """The program conf, and the launch file when argv/env need `LAUNCHER`."""
        return render_program(
            ProgramConf(
                name=name,
                command=tuple(command),
                cwd=cwd,
                env=env,
                log=stdout_log,
                stop_timeout=stop_timeout,
                python=sys.executable,
                launch_path=self._launch_path(name),
                owner=owner,
                autorestart=autorestart,
                startsecs=startsecs,
                startretries=startretries,
                stop_signal=stop_signal,
                stop_as_group=stop_as_group,
                user_ids=(user.uid, user.gid, *user.groups) if user else None,
            )
        )


# Variables Conveyor itself sets: their values (the project, the run user's name, its
# home, ports) are in paths and messages everywhere and never secret.
_OWN_VARIABLES = frozenset({"PORT", "HOST", "DATA_DIR", "USER", "LOGNAME", "HOME", "PATH", "LANG"})


def _redact(text: str, env: Mapping[str, str]) -> str:
    """`text` with the value of every variable of `env` that may be secret masked (all but
    Conveyor's own: an app's variable may hold a secret whatever its name)."""
    values = (
        v for k, v in env.items() if k not in _OWN_VARIABLES and not k.startswith("CONVEYOR_")
    )
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "***")
    return redact_registered(text)


# -- small helpers -------------------------------------------------------------


def check_program_name(name: str) -> None:
    """Raise TargetError unless `name` is usable as a program (and file) name."""
    if not _NAME_RE.fullmatch(name) or name == EVENT_LISTENER:
        raise TargetError(
            f"invalid program name {name!r}",
            hint=f"use letters, digits, '.', '_' and '-' (at most 128), and not {EVENT_LISTENER!r}",
        )


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _atomic_write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(path)


def _tail_text(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    tail = [printable(line) for line in text.splitlines()[-lines:]]
    return f"--- {path} ---\n" + "\n".join(tail) + "\n" if tail else ""


# -- event listener (runs inside supervisord as `python -m ...`) ----------------


def _listen_events(events_dir: Path, socket_path: Path | None = None) -> None:
    """supervisor event-listener protocol: READY, read one event, RESULT; forever.

    Exits nobody asked for (EXITED, BACKOFF) are appended to `events/<name>`;
    every state change also tells the waker thread (see `_wake_on_exits`) to
    watch the programs' current pids.
    """
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    changed_r, changed_w = os.pipe()
    if socket_path is not None and hasattr(os, "pidfd_open"):
        threading.Thread(target=_wake_on_exits, args=(socket_path, changed_r), daemon=True).start()
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return
        headers = dict(tok.split(":", 1) for tok in line.decode().split() if ":" in tok)
        payload = stdin.read(int(headers.get("len", "0")))
        first = payload.decode(errors="replace").split("\n", 1)[0]
        fields = dict(tok.split(":", 1) for tok in first.split() if ":" in tok)
        group = fields.get("groupname", "")
        state = headers.get("eventname", "").removeprefix("PROCESS_STATE_")
        with contextlib.suppress(OSError):
            os.write(changed_w, b".")  # a full pipe already says "look again"
        if _NAME_RE.fullmatch(group) and group != EVENT_LISTENER and state in _EXITS:
            record = (
                f"{time.time():.3f} {state} from={fields.get('from_state', '')} "
                f"pid={fields.get('pid', '')}\n"
            )
            try:
                with (events_dir / group).open("a", encoding="utf-8") as f:
                    f.write(record)
            except OSError as exc:  # never block supervisord's event queue on it
                print(
                    f"conveyor-events: cannot record {record.strip()}: {exc}",
                    file=sys.stderr,
                    flush=True,
                )
        stdout.write(b"RESULT 2\nOK")
        stdout.flush()


_EXITS = ("EXITED", "BACKOFF")


def _wake_on_exits(socket_path: Path, changed: int) -> None:
    """Wake supervisord the moment one of its programs exits, so it restarts it at once.

    supervisord reaps children between two polls of its sockets, which wait up
    to 1 s: a child's closing pipes wake it, but usually an instant before the
    child can be reaped, so a router killed with SIGKILL stayed down for about
    a second. This thread holds a pidfd of every running program; when one
    becomes readable (the process exited) it sends supervisord a request, whose
    handling wakes its loop and reaps the child. `changed` is readable when a
    program changed state (the pids are read again).
    """
    os.set_blocking(changed, False)
    while True:
        pidfds: list[int] = []
        try:
            supervisor = xmlrpc.client.ServerProxy(
                "http://127.0.0.1", transport=_Transport(socket_path, 5.0)
            )
            infos: list[dict[str, Any]] = supervisor.supervisor.getAllProcessInfo()  # type: ignore[assignment]
            for info in infos:
                if info.get("pid") and info.get("statename") in ("STARTING", "RUNNING"):
                    with contextlib.suppress(OSError):
                        pidfds.append(os.pidfd_open(int(info["pid"])))
            readable, _, _ = select.select([changed, *pidfds], [], [], 60.0)
            if any(fd in readable for fd in pidfds):
                supervisor.supervisor.getState()
                time.sleep(0.01)  # never a busy loop while supervisord catches up
            if changed in readable:
                with contextlib.suppress(OSError):
                    os.read(changed, 4096)
        except Exception as exc:  # supervisord busy or gone: look again shortly
            print(f"conveyor-events: waker: {exc}", file=sys.stderr, flush=True)
            time.sleep(1.0)
        finally:
            for fd in pidfds:
                os.close(fd)


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "listen-events":
        _listen_events(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) == 4 else None)
    else:
        sys.exit("usage: python -m conveyor.targets.supervisor listen-events EVENTS_DIR [SOCKET]")
