"""A small typed client that owns one supervisord per Conveyor home.

Layout under `paths.supervisor_dir`:

* `supervisord.conf` - rewritten by `ensure_running()` before each start.
* `programs/<name>.conf` - one `[program:<name>]` per `add_program()`; included
  by supervisord, so a restarted supervisord (after a reboot) brings them back.
  The first line is a `; conveyor-meta: {json}` comment holding the owner and
  the log path. Mode 0600: environments hold secrets.
* `programs/<name>.launch.json` - only for argv/environments that supervisor's
  config syntax cannot carry losslessly (see `_LAUNCHER`).
* `events/<name>` - one line per exit of the program that nobody asked for,
  appended by the event listener below; its line count is the restart count.
* `supervisord.log`, `supervisord.pid`, `ensure.lock`.

The XML-RPC socket is `paths.supervisor_socket` (mode 0700).

Restarts are counted with supervisor's own event mechanism: an
`[eventlistener:conveyor-events]` (this module run with `-m`) subscribes to
PROCESS_STATE_EXITED (the process died while RUNNING) and
PROCESS_STATE_BACKOFF (it died while STARTING). A stop requested through
XML-RPC goes STOPPING -> STOPPED and emits neither, so every line is an exit
nobody asked for. supervisord buffers events while the listener is busy or
restarting, so none is missed by polling gaps, and nothing depends on the
format or rotation of supervisord's log. `add_program()` truncates the file,
so the count starts when the program is added.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.environ import minimal_environment
from conveyor.errors import TargetError
from conveyor.paths import Paths
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

__all__ = [
    "EVENT_LISTENER",
    "ProgramInfo",
    "Supervisor",
    "check_program_name",
    "supervisord_executable",
]

EVENT_LISTENER = "conveyor-events"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_META_PREFIX = "; conveyor-meta: "
_POLL = 0.02

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

# Runs argv with extra environment from a JSON file, replacing itself (same
# pid, signals reach the real program). Used only when the argv or environment
# cannot survive supervisor's config syntax: newlines, " ;" or " #" (inline
# comments), values with both quote kinds or starting/ending with a quote,
# non-ASCII (supervisord decodes its config with its own locale).
_LAUNCHER = (
    "import json,os,sys;"
    "f=open(sys.argv[1],encoding='utf-8');s=json.load(f);f.close();"
    "e=dict(os.environ);e.update(s['env']);"
    "os.execvpe(s['argv'][0],s['argv'],e)"
)


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

    def _write_supervisord_conf(self) -> None:
        d = self.dir
        listener = [
            sys.executable,
            "-m",
            "conveyor.targets.supervisor",
            "listen-events",
            str(self.events_dir),
        ]
        package_root = str(Path(__file__).resolve().parents[2])
        listener_env = _render_environment({"PYTHONPATH": package_root})
        if listener_env is None or _command_value(listener) is None:
            raise TargetError(
                f"the paths {sys.executable!r} and {package_root!r} cannot be written "
                "into a supervisord config file",
                hint="install Conveyor under a path without newlines, ' ;' or ' #'",
            )
        sock = self.paths.supervisor_socket
        lines = [
            "; Written by Conveyor before each start of supervisord; edits are lost.",
            "[unix_http_server]",
            f"file={_path_value(sock)}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={_path_value(d / 'supervisord.log')}",
            "logfile_maxbytes=10MB",
            "logfile_backups=2",
            "loglevel=info",
            f"pidfile={_path_value(self.pid_path)}",
            f"childlogdir={_path_value(d)}",
            f"directory={_path_value(d)}",
            "minfds=256",
            "minprocs=64",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{_path_value(sock)}",
            "",
            f"[eventlistener:{EVENT_LISTENER}]",
            f"command={_command_value(listener)}",
            f"environment={listener_env}",
            "events=PROCESS_STATE_EXITED,PROCESS_STATE_BACKOFF",
            "buffer_size=1024",
            "autorestart=true",
            "startsecs=0",
            "stopwaitsecs=2",
            "stdout_logfile=NONE",  # stdout is the protocol channel
            f"stderr_logfile={_path_value(d / 'event-listener.log')}",
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
    ) -> bool:
        """Add and start a program without touching any other; True if it was (re)added.

        No-op (returns False) when a program of that name runs with the same
        config; a stopped one is started again. A different config under the
        same name replaces the program (stop, then add). stderr goes to
        `stdout_log` too; `stop_signal` (SIGTERM unless the program wants
        another, e.g. HAProxy's graceful USR1) reaches the whole process group,
        SIGKILL follows after `stop_timeout` (rounded up to whole seconds).
        """
        check_program_name(name)
        if stop_signal not in _STOP_SIGNALS:
            raise TargetError(
                f"program {name}: unknown stop signal {stop_signal!r}",
                hint=f"use one of {', '.join(_STOP_SIGNALS)}",
            )
        if not command:
            raise TargetError(f"program {name}: the command is empty", hint="give an argv list")
        bad_keys = [k for k in env if not _ENV_KEY_RE.fullmatch(k)]
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
        if first.startswith(_META_PREFIX):
            with contextlib.suppress(ValueError):
                meta = json.loads(first[len(_META_PREFIX) :])
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
    ) -> tuple[str, str | None]:
        """The program conf, and the launch file when argv/env need `_LAUNCHER`."""
        command_value = _command_value(command)
        environment = _render_environment(env)
        launch: str | None = None
        if command_value is None or environment is None:
            launch = json.dumps({"argv": command, "env": env}, ensure_ascii=False)
            launch_argv = [
                sys.executable,
                "-I",
                "-S",
                "-c",
                _LAUNCHER,
                str(self._launch_path(name)),
            ]
            command_value = _command_value(launch_argv)
            environment = ""
            if command_value is None:
                raise TargetError(
                    f"program {name}: the path {self._launch_path(name)} cannot be written "
                    "into a supervisord config file",
                    hint="use a Conveyor home path without newlines, ' ;' or ' #'",
                )
        meta = {
            "owner": owner,
            "log": str(stdout_log),
            "autorestart": autorestart,
            "stop_timeout": stop_timeout,
            # The launch file's digest makes a changed launch file a changed conf.
            "launch": hashlib.sha256(launch.encode()).hexdigest() if launch else None,
        }
        lines = [
            _META_PREFIX + json.dumps(meta, sort_keys=True),
            f"[program:{name}]",
            f"command={command_value}",
            f"directory={_path_value(cwd)}",
        ]
        if environment:
            lines.append(f"environment={environment}")
        lines += [
            "autostart=true",
            f"autorestart={'true' if autorestart else 'false'}",
            f"startsecs={int(startsecs)}",
            f"startretries={int(startretries)}",
            f"stopsignal={stop_signal}",
            f"stopwaitsecs={max(0, math.ceil(stop_timeout))}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_path_value(stdout_log)}",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=2",
            "",
        ]
        return "\n".join(lines), launch


# -- config-value rendering ------------------------------------------------------


def _escape(value: str) -> str:
    """supervisor expands `%(name)s` in values; `%%` is a literal `%`."""
    return value.replace("%", "%%")


def _plain_ok(value: str) -> bool:
    """Characters a config line carries unchanged whatever supervisord's locale."""
    return value.isascii() and "\n" not in value and "\r" not in value and "\0" not in value


def _parse_back(option: str, line_value: str) -> str | None:
    """What supervisor reads back for `option=<line_value>`, before splitting."""
    from supervisor.options import UnhosedConfigParser

    parser = UnhosedConfigParser()
    try:
        parser.read_string(f"[program:x]\n{option}={line_value}\n")
        # supervisor replaces the text "%(here)s" before expanding, even in "%%(here)s".
        parser.expand_here("/here")
        raw = parser.get("program:x", option)
        from supervisor.options import expand as supervisor_expand

        return str(supervisor_expand(raw, {}, option))
    except Exception:
        return None


def _command_value(argv: Sequence[str]) -> str | None:
    """`command=` value that supervisor splits back into exactly `argv`, or None."""
    if not argv or not all(_plain_ok(a) for a in argv):
        return None
    value = _escape(shlex.join(argv))
    back = _parse_back("command", value)
    try:
        ok = back is not None and shlex.split(back) == list(argv)
    except ValueError:
        ok = False
    return value if ok else None


def _quote_env_value(value: str) -> str | None:
    # supervisor tokenizes with a non-POSIX shlex (no escapes) and then strips
    # every leading/trailing quote character from the value.
    if value and (value[0] in "'\"" or value[-1] in "'\""):
        return None
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    return None


def _render_environment(env: Mapping[str, str]) -> str | None:
    """`environment=` value that supervisor parses back into exactly `env`, or None."""
    if not env:
        return ""
    parts = []
    for key, value in env.items():
        quoted = _quote_env_value(value)
        if quoted is None or not _ENV_KEY_RE.fullmatch(key) or not _plain_ok(value):
            return None
        parts.append(f"{key}={quoted}")
    value = _escape(",".join(parts))
    back = _parse_back("environment", value)
    try:
        from supervisor.datatypes import dict_of_key_value_pairs

        ok = back is not None and dict_of_key_value_pairs(back) == dict(env)
    except ValueError:
        ok = False
    return value if ok else None


def _path_value(path: Path) -> str:
    text = str(path)
    value = _escape(text)
    if any(c in text for c in "\n\r\0") or _parse_back("path", value) != text:
        raise TargetError(
            f"the path {text!r} cannot be written into a supervisord config file",
            hint="use paths without newlines, leading/trailing spaces, ' ;' or ' #'",
        )
    return value


def _redact(text: str, env: Mapping[str, str]) -> str:
    for value in sorted(env.values(), key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


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
    tail = text.splitlines()[-lines:]
    return f"--- {path} ---\n" + "\n".join(tail) + "\n" if tail else ""


# -- event listener (runs inside supervisord as `python -m ...`) ----------------


def _listen_events(events_dir: Path) -> None:
    """supervisor event-listener protocol: READY, read one event, RESULT; forever."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
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
        if _NAME_RE.fullmatch(group) and group != EVENT_LISTENER:
            state = headers.get("eventname", "").removeprefix("PROCESS_STATE_")
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


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "listen-events":
        _listen_events(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m conveyor.targets.supervisor listen-events EVENTS_DIR")
