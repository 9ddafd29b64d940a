"""What every process of a release gets (instances, migrations, one-off commands): its
variables and the user it runs as, with its data directory and release ready for it."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from conveyor.environ import expand_env, minimal_environment
from conveyor.runas import (
    RunUser,
    open_release,
    own_data_dir,
    require_reachable,
    require_runnable,
    run_user,
    search_path_for,
)

# Links a release's tools run through: a virtualenv's python points at the interpreter
# it was made with, which the app's user must be able to run too.
INTERPRETERS = (".venv/bin/python",)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PLAIN_WORD = re.compile(r"^[\w./+-]+$")

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime


class ReleaseContext(NamedTuple):
    """Where, with what and as whom a release's one-off command runs."""

    cwd: Path
    env: dict[str, str]
    user: RunUser | None


def release_env(rt: Runtime, environment: str, service: str, release_id: str) -> dict[str, str]:
    """What every process of a release gets (instances, migrations): its env from the
    config, DATA_DIR and CONVEYOR_*, with `${DATA_DIR}` and the like filled in (and
    USER, LOGNAME and HOME when it runs as another user), and the environment's secrets
    (added after the expansion: a secret's value is taken as it is)."""
    from conveyor.config.accessories import fill
    from conveyor.engine.accessories import referenced

    svc = rt.loaded.config.service_for(environment, service)
    reached = referenced(rt, environment, list(svc.env.values()))
    service_env = {k: fill(v, reached) for k, v in svc.env.items()}
    data_dir = rt.paths.data / environment / service
    user = run_user(svc.run_as)
    own_data_dir(data_dir, user)
    account: dict[str, str] = {}  # who the process is, for a user it switches to
    searched: dict[str, str] = {}
    if user is not None:
        account = user.environment(data_dir)
        path = svc.env.get("PATH") or minimal_environment()["PATH"]
        searched = {"PATH": search_path_for(path, user)}
    expanded = expand_env(
        {
            # Releases are sealed; Python would otherwise write __pycache__ into
            # them (root ignores the read-only bits) and break their digest.
            "PYTHONDONTWRITEBYTECODE": "1",
            **account,
            **service_env,  # the service's env with the environment's merged over it
            **searched,
            "DATA_DIR": str(data_dir),
            "CONVEYOR_ENV": environment,
            "CONVEYOR_SERVICE": service,
            "CONVEYOR_RELEASE": release_id,
        }
    )
    return {**expanded, **rt.secrets(environment)}


def release_user(rt: Runtime, environment: str, service: str, release_dir: Path) -> RunUser | None:
    """The user the release's processes run as (None: Conveyor's own), after making sure
    it can read the release, write its `writable:` directories and reach its data."""
    svc = rt.loaded.config.service_for(environment, service)
    user = run_user(svc.run_as)
    if user is not None:
        require_reachable(release_dir, user, "release")
        require_reachable(rt.paths.data / environment / service, user, "data directory")
        for interpreter in INTERPRETERS:
            if (release_dir / interpreter).is_symlink():
                require_runnable(release_dir / interpreter, user, "the release's")
    open_release(release_dir, svc.writable, user)
    return user


def require_command_runnable(argv: list[str], env: dict[str, str], user: RunUser) -> None:
    """Fail before starting when `user` may not run the command's program (found on the
    instance's PATH, as supervisord finds it)."""
    program = command_program(argv)
    if program is None:
        return
    found = shutil.which(program, path=env.get("PATH") or minimal_environment()["PATH"])
    if found is not None:
        require_runnable(Path(found), user, "the command's program")


def command_program(argv: list[str]) -> str | None:
    """The program a command starts: argv[0], or the first word of a `/bin/sh -c` script
    when it is a plain one; None when only the shell could tell.

    >>> command_program(["/bin/sh", "-c", "exec .venv/bin/gunicorn -b :$PORT app:app"])
    '.venv/bin/gunicorn'
    >>> command_program(["/bin/sh", "-c", "$SERVER --port $PORT"]) is None
    True
    """
    if argv[:2] != ["/bin/sh", "-c"] or len(argv) < 3:
        return argv[0]
    try:
        words = shlex.split(argv[2])
    except ValueError:
        return None
    while words and (words[0] == "exec" or _ASSIGNMENT.match(words[0])):
        words = words[1:]
    if not words or not _PLAIN_WORD.match(words[0]):
        return None
    return words[0]
