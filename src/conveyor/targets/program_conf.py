"""supervisord program files: the text of a `[program:x]` section that supervisor reads
back into exactly the argv, environment and paths it was given. Pure functions, shared
by the local target (`targets.supervisor`) and the SSH target (`targets.ssh_programs`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from conveyor.errors import TargetError

ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
META_PREFIX = "; conveyor-meta: "  # the first line of a program file: what Conveyor knows

# Every program starts through this launcher, which replaces itself with the real
# program (same pid, signals reach the real program). It asks the kernel for a
# SIGTERM when its parent, supervisord, dies (PR_SET_PDEATHSIG, kept across
# exec), so that a supervisord killed with SIGKILL takes its instances and
# routers with it instead of leaving them serving as orphans (what they leave
# behind is found by `conveyor.targets.orphans` at the next start). Its
# arguments are `-- ARGV...`, or a JSON file with argv and extra environment
# when the argv or environment cannot survive supervisor's config syntax:
# newlines, " ;" or " #" (inline comments), values with both quote kinds or
# starting/ending with a quote, non-ASCII (supervisord decodes its config with
# its own locale).
LAUNCHER = (
    "import ctypes,json,os,signal,sys;"
    "a=sys.argv[1:];"
    "u=[int(n)for n in a.pop(0)[2:].split(',')]if a[0][:2]=='u:'else None;"
    "s={'argv':a[1:],'env':{}}if a[0]=='--'else json.load(open(a[0],encoding='utf-8'));"
    "u and(os.setgroups(u[2:]),os.setgid(u[1]),os.setuid(u[0]));"
    "p=os.getppid();"
    "ctypes.CDLL(None).prctl(1,int(signal.SIGTERM));"  # 1: PR_SET_PDEATHSIG
    "os.getppid()==p or sys.exit('conveyor launcher: supervisord is gone');"
    "e=dict(os.environ);e.update(s['env']);"
    "os.execvpe(s['argv'][0],s['argv'],e)"
)
# The launcher also becomes the program's user (`u:UID,GID,GROUPS...` first): it
# starts as supervisord's user, so the interpreter that runs it (Conveyor's own, which
# may live where the app's user cannot go) need not be one the app's user may run. The
# parent-death signal is asked for after the switch, which would clear it.


@dataclass(frozen=True)
class ProgramConf:
    """What a program file says: how supervisord runs one process."""

    name: str
    command: tuple[str, ...]
    cwd: PurePath
    env: Mapping[str, str]
    log: PurePath  # stdout and stderr, appended
    stop_timeout: float  # seconds between the stop signal and SIGKILL
    python: str  # the interpreter that runs `LAUNCHER` (on the machine supervisord runs on)
    launch_path: PurePath  # where the launch file goes when the conf cannot carry argv/env
    owner: str = "instance"
    autorestart: bool = True
    startsecs: int = 1
    startretries: int = 3
    stop_signal: str = "TERM"
    # True: the stop signal goes to the whole process group (a server under a shell);
    # False: to the program's own process only (a Celery worker's main process, which has
    # its pool finish the running tasks). SIGKILL always goes to the whole group.
    stop_as_group: bool = True
    user_ids: tuple[int, ...] | None = None  # uid, gid, groups the launcher switches to


def render_program(program: ProgramConf) -> tuple[str, str | None]:
    """The program conf, and the launch file's text when argv or env need one."""
    ids = program.user_ids
    switch = [f"u:{','.join(map(str, ids))}"] if ids else []
    launcher = [program.python, "-I", "-S", "-c", LAUNCHER, *switch]
    command = command_value([*launcher, "--", *program.command])
    environment = render_environment(program.env)
    launch: str | None = None
    if command is None or environment is None:
        launch = json.dumps(
            {"argv": list(program.command), "env": dict(program.env)}, ensure_ascii=False
        )
        command = command_value([*launcher, str(program.launch_path)])
        environment = ""
        if command is None:
            raise TargetError(
                f"program {program.name}: the path {program.launch_path} cannot be written "
                "into a supervisord config file",
                hint="use a Conveyor home (or project name) without newlines, ' ;' or ' #'",
            )
    meta = {
        "owner": program.owner,
        "log": str(program.log),
        "autorestart": program.autorestart,
        "stop_timeout": program.stop_timeout,
        # The launch file's digest makes a changed launch file a changed conf.
        "launch": hashlib.sha256(launch.encode()).hexdigest() if launch else None,
    }
    lines = [
        META_PREFIX + json.dumps(meta, sort_keys=True),
        f"[program:{program.name}]",
        f"command={command}",
        f"directory={path_value(program.cwd)}",
    ]
    if environment:
        lines.append(f"environment={environment}")
    lines += [
        "autostart=true",
        f"autorestart={'true' if program.autorestart else 'false'}",
        f"startsecs={int(program.startsecs)}",
        f"startretries={int(program.startretries)}",
        f"stopsignal={program.stop_signal}",
        f"stopwaitsecs={max(0, math.ceil(program.stop_timeout))}",
        f"stopasgroup={'true' if program.stop_as_group else 'false'}",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={path_value(program.log)}",
        "stdout_logfile_maxbytes=10MB",
        "stdout_logfile_backups=2",
        "",
    ]
    return "\n".join(lines), launch


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


def command_value(argv: Sequence[str]) -> str | None:
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


def render_environment(env: Mapping[str, str]) -> str | None:
    """`environment=` value that supervisor parses back into exactly `env`, or None."""
    if not env:
        return ""
    parts = []
    for key, value in env.items():
        quoted = _quote_env_value(value)
        if quoted is None or not ENV_KEY_RE.fullmatch(key) or not _plain_ok(value):
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


def path_value(path: PurePath) -> str:
    text = str(path)
    value = _escape(text)
    if any(c in text for c in "\n\r\0") or _parse_back("path", value) != text:
        raise TargetError(
            f"the path {text!r} cannot be written into a supervisord config file",
            hint="use paths without newlines, leading/trailing spaces, ' ;' or ' #'",
        )
    return value
