"""The agent as a supervisord program: started, replaced and stopped by deploys.

The program's environment carries what the agent cannot find by itself under
supervisord's minimal environment: the Conveyor home and state URL, the variables
`conveyor.yml` references (`${DATABASE_URL}`, resolved when the deploy read the
file), and the environment's resolved secrets (`CONVEYOR_AGENT_SECRETS`, JSON). Like
the instances' program files, its file is 0600 in a 0700 directory. A deploy whose
config, variables and secrets are unchanged leaves the agent running (and the runs
it has under way); any change replaces it, which reloads its jobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conveyor.config.cache import RecordingEnviron
from conveyor.engine.runtime import Runtime
from conveyor.errors import TargetError
from conveyor.printable import printable
from conveyor.redaction import redact_registered

OWNER = "agent"
SECRETS_VARIABLE = "CONVEYOR_AGENT_SECRETS"
START_TIMEOUT_S = 10.0  # supervisord calls it RUNNING after its first second
STOP_TIMEOUT_S = 15.0  # runs under way are cancelled and recorded before it exits
PASSED_ON = ("CONVEYOR_STATE_URL", "PYTHONPATH")


def program_name(environment: str) -> str:
    return f"conveyor-agent-{environment}"


def log_path(rt: Runtime, environment: str) -> Path:
    """Where the agent's lines go (`conveyor jobs ENV` names it)."""
    return rt.paths.home / "logs" / f"{program_name(environment)}.log"


def config_variables(rt: Runtime) -> dict[str, str]:
    """The variables of this command's environment that `conveyor.yml` references."""
    from conveyor.config import load_config

    recording = RecordingEnviron(os.environ)
    load_config(rt.loaded.path, environ=recording)
    return {name: os.environ[name] for name in sorted(recording.names) if name in os.environ}


def program_env(rt: Runtime, environment: str) -> dict[str, str]:
    env = {
        **config_variables(rt),
        "CONVEYOR_HOME": str(rt.paths.home),
        "CONVEYOR_USER": "conveyor-agent",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for key in PASSED_ON:
        if os.environ.get(key):
            env[key] = os.environ[key]
    secrets = rt.secrets(environment)
    if secrets:
        env[SECRETS_VARIABLE] = json.dumps(secrets, sort_keys=True)
    # The file's text too: an edit that changes no variable still reloads the jobs.
    digest = hashlib.sha256(rt.loaded.path.read_bytes()).hexdigest()[:16]
    env["CONVEYOR_AGENT_CONFIG"] = digest
    return env


def sync(rt: Runtime, environment: str, progress: Callable[[str], None]) -> None:
    """After a deploy: the agent runs with this config when the environment has jobs or
    monitors, and is stopped when it has neither."""
    monitors = rt.environment(environment).monitors
    watches = 0 if monitors is None else len(monitors.rules) + len(monitors.probes)
    if not rt.loaded.config.jobs_for(environment) and not watches:
        stop(rt, environment, progress)
        return
    command = [
        sys.executable,
        "-m",
        "conveyor",
        "--config",
        str(rt.loaded.path),
        "agent",
        environment,
    ]
    existed = rt.supervisor.program_conf_path(program_name(environment)).exists()
    added = rt.supervisor.add_program(
        program_name(environment),
        command,
        cwd=rt.loaded.root,
        env=program_env(rt, environment),
        stdout_log=log_path(rt, environment),
        stop_timeout=STOP_TIMEOUT_S,
        startsecs=1,
        owner=OWNER,
    )
    count = len(rt.loaded.config.jobs_for(environment))
    if added:
        _wait_running(rt, environment)
        what = "restarted" if existed else "started"
        said = f"{count} scheduled job{'s' * (count != 1)}"
        if watches:
            said += f", {watches} monitor{'s' * (watches != 1)}"
        progress(f"{what} the agent of {environment} ({said})")


def _wait_running(rt: Runtime, environment: str) -> None:
    """Return once supervisord has the agent RUNNING (alive for its first second); raise
    `TargetError` with the end of its log when it exits instead (a config it cannot load)."""
    from conveyor.targets.base import BACKOFF, EXITED, FATAL, RUNNING

    name = program_name(environment)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = rt.supervisor.program_info(name)
        state = info.status.state if info is not None else None
        if state == RUNNING:
            return
        if state in (BACKOFF, EXITED, FATAL):
            path = log_path(rt, environment)
            lines = path.read_text(errors="replace").splitlines()[-5:] if path.exists() else []
            said = redact_registered(printable(" / ".join(lines)))
            raise TargetError(
                f"it exited at start ({said or 'no output'})",
                hint=f"see {path}; `conveyor jobs {environment}` shows whether it runs",
            )
        time.sleep(0.1)


def stop(rt: Runtime, environment: str, progress: Callable[[str], None]) -> None:
    """Stop the environment's agent, if it runs (runs under way are recorded as failed)."""
    name = program_name(environment)
    if not rt.supervisor.program_conf_path(name).exists():
        return
    if rt.supervisor.remove_program(name):
        progress(f"stopped the agent of {environment}")


def secrets_from_environment(rt: Runtime, environment: str) -> None:
    """In the agent: take the secrets the deploy resolved (and mask them from now on)
    instead of resolving them again, which may need the deployer's shell."""
    from conveyor.redaction import register_secrets

    values: dict[str, str] = json.loads(os.environ.pop(SECRETS_VARIABLE, "{}") or "{}")
    register_secrets(values.values())
    rt.use_secrets(environment, values)
