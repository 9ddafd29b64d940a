"""Hooks: the project's (then the environment's) commands around a deploy.

They run in the directory of conveyor.yml with the deployer's environment
plus CONVEYOR_ENV, CONVEYOR_DEPLOYMENT, CONVEYOR_USER, CONVEYOR_KIND,
CONVEYOR_STATUS, CONVEYOR_RELEASES ("api=<id> web=<id>"),
CONVEYOR_PREVIOUS_RELEASES, CONVEYOR_RELEASE_<SERVICE>,
CONVEYOR_PREVIOUS_RELEASE_<SERVICE> and, after a failure, CONVEYOR_ERROR.
Their output goes to the deployment's log (secrets masked). A failing `pre_deploy` stops the
deploy before anything changes; the others are reported, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from conveyor.config import command_argv
from conveyor.errors import ConveyorError
from conveyor.redaction import LineRedactor
from conveyor.store.records import DeploymentRecord

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime

HOOKS = ("pre_deploy", "post_deploy", "on_failure", "on_rollback")


class HookError(ConveyorError):
    """A hook command failed."""


def hook_env(deployment: DeploymentRecord) -> dict[str, str]:
    env = {
        "CONVEYOR_ENV": deployment.environment,
        "CONVEYOR_DEPLOYMENT": deployment.id,
        "CONVEYOR_USER": deployment.user,
        "CONVEYOR_KIND": deployment.kind,
        "CONVEYOR_STATUS": deployment.status,
        "CONVEYOR_RELEASES": " ".join(f"{s}={r}" for s, r in sorted(deployment.releases.items())),
        "CONVEYOR_PREVIOUS_RELEASES": " ".join(
            f"{s}={r}" for s, r in sorted(deployment.previous.items())
        ),
    }
    for service, release in deployment.releases.items():
        env[f"CONVEYOR_RELEASE_{_var(service)}"] = release
    for service, release in deployment.previous.items():
        env[f"CONVEYOR_PREVIOUS_RELEASE_{_var(service)}"] = release
    if deployment.error:
        env["CONVEYOR_ERROR"] = deployment.error
    return env


def _var(service: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", service).upper()


def commands(rt: Runtime, which: str, environment: str) -> list[str | list[str]]:
    project = rt.loaded.config.hooks
    env = rt.environment(environment).hooks
    return [*(getattr(project, which) if project else []), *(getattr(env, which) if env else [])]


async def run_hooks(
    rt: Runtime, which: str, deployment: DeploymentRecord, progress: Callable[[str], None]
) -> list[str]:
    """Run the `which` hooks of the deployment's environment; the failures, described."""
    todo = commands(rt, which, deployment.environment)
    if not todo:
        return []
    settings = rt.environment(deployment.environment).hooks or rt.loaded.config.hooks
    seconds = settings.timeout if settings is not None else 300.0
    logs = rt.paths.deployment_logs
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{deployment.id}.log"
    failures = []
    for command in todo:
        argv = command_argv(command)
        shown = command if isinstance(command, str) else " ".join(command)
        progress(f"hook {which}: {shown}")
        with log_path.open("ab") as log:
            log.write(f"--- hook {which}: {shown}\n".encode())
            log.flush()
            problem = await _run(argv, rt, deployment, log, seconds)
        if problem:
            failures.append(f"hook {which} `{shown}` {problem} (output in {log_path})")
    return failures


async def _run(
    argv: list[str], rt: Runtime, deployment: DeploymentRecord, log: IO[bytes], timeout: float
) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=rt.loaded.root,
            env={**os.environ, **rt.secrets(deployment.environment), **hook_env(deployment)},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return f"could not run: {exc.strerror or exc}"
    masked = LineRedactor()  # hooks get the secrets: the log gets their output masked

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            log.write(masked.feed(chunk))
            log.flush()

    reader = asyncio.create_task(pump())
    problem = ""
    try:
        code = await asyncio.wait_for(proc.wait(), timeout)
        problem = "" if code == 0 else f"exited {code}"
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        problem = f"timed out after {timeout:g} s"
    try:
        # A child left running with the pipe open must not hold the deploy.
        await asyncio.wait_for(asyncio.shield(reader), 5.0)
    except TimeoutError:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    log.write(masked.flush())
    return problem
