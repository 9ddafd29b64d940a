"""Waiting for an instance to become healthy, and building its check from config."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from conveyor.checks.answers import WrongAnswers, explain
from conveyor.checks.base import Check, CheckResult
from conveyor.checks.command import CommandCheck
from conveyor.checks.http import HttpCheck
from conveyor.checks.tcp import TcpCheck
from conveyor.environ import instance_argv
from conveyor.errors import HealthCheckError, WrongAnswerError
from conveyor.redaction import env_secrets

# The config models satisfy these protocols; importing them here would make
# checks depend on config.


class HealthSpec(Protocol):
    """What every health section of `conveyor.yml` has."""

    @property
    def type(self) -> str:
        """One of "http", "tcp", "command"."""
        ...

    @property
    def timeout(self) -> float:
        """Seconds one attempt may take."""
        ...


class HttpHealthSpec(HealthSpec, Protocol):
    """`type: http`: GET `path` on the instance, expect `expect_status`."""

    @property
    def path(self) -> str:
        """URL path, e.g. "/health"."""
        ...

    @property
    def expect_status(self) -> int:
        """The status code that means healthy."""
        ...

    @property
    def unhealthy_threshold(self) -> int:
        """Identical wrong answers in a row after which the instance is failed."""
        ...

    @property
    def start_period(self) -> float:
        """Seconds after the start during which wrong answers do not count."""
        ...


class CommandHealthSpec(HealthSpec, Protocol):
    """`type: command`: a shell string or an argv list that exits 0 when healthy."""

    @property
    def command(self) -> str | Sequence[str]:
        """A string runs through /bin/sh -c; a list is run as is."""
        ...


def make_check(
    health: HttpHealthSpec | CommandHealthSpec | HealthSpec,
    host: str,
    port: int,
    cwd: Path,
    env: Mapping[str, str],
) -> Check:
    """Build the check of one instance from its service's health section.

    `env` is the instance's environment; a command check also gets PORT and
    HOST, and runs in `cwd` (the release directory).
    """
    kind = health.type
    if kind == "http":
        spec = cast(HttpHealthSpec, health)
        path = spec.path if spec.path.startswith("/") else "/" + spec.path
        url_host = f"[{host}]" if ":" in host else host
        url = f"http://{url_host}:{port}{path}"
        return HttpCheck(
            url, spec.expect_status, spec.timeout, env_secrets(env), host_header(host, port)
        )
    if kind == "tcp":
        return TcpCheck(host, port, health.timeout)
    if kind == "command":
        command = cast(CommandHealthSpec, health).command
        check_env = {**env, "PORT": str(port), "HOST": host}
        argv = instance_argv(command, check_env)
        return CommandCheck(argv, cwd=cwd, env=check_env, timeout=health.timeout)
    raise ValueError(f"unknown health check type {kind!r} (expected http, tcp or command)")


def host_header(host: str, port: int) -> str | None:
    """The `Host:` of a check of an instance listening on `host`: on another host, the one
    it would get on this machine (`127.0.0.1:PORT`), so that host allow-lists (Django's
    ALLOWED_HOSTS) need no host addresses; None (the URL's) on this machine."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return None if loopback else f"127.0.0.1:{port}"


@dataclass(frozen=True)
class FailFast:
    """When to stop waiting for an HTTP check that keeps getting the same wrong answer."""

    url: str
    expect_status: int
    threshold: int
    """Identical wrong answers in a row (see `conveyor.checks.answers.WrongAnswers`)."""
    start_period: float
    """Seconds from the start of the wait during which answers do not count."""
    logs_command: str
    """The command that shows the instance's log, for the hint of a 5xx."""


def fail_fast_for(
    health: HttpHealthSpec | HealthSpec, check: Check, logs_command: str
) -> FailFast | None:
    """The fail-fast rule of an HTTP health check; None for the other kinds (a TCP or
    command check has no answer to tell a misconfiguration from a slow boot)."""
    if health.type != "http" or not isinstance(check, HttpCheck):
        return None
    spec = cast(HttpHealthSpec, health)
    return FailFast(
        url=check.url,
        expect_status=spec.expect_status,
        threshold=spec.unhealthy_threshold,
        start_period=spec.start_period,
        logs_command=logs_command,
    )


async def wait_until_healthy(
    check: Check,
    *,
    interval: float,
    healthy_threshold: int,
    timeout: float,
    is_alive: Callable[[], Awaitable[bool]] | None = None,
    fail_fast: FailFast | None = None,
) -> CheckResult:
    """Run `check` every `interval` seconds until it passes `healthy_threshold` times in a row.

    Returns the last (passing) result. Raises `HealthCheckError` when `timeout`
    seconds pass first, with the last result's detail in the message, or at
    once when `is_alive` reports that the instance is not running. An attempt
    still running at the deadline is abandoned. With `fail_fast`, the same
    wrong HTTP status `fail_fast.threshold` times in a row once its start
    period is over raises `WrongAnswerError` (status, body line, a hint) at
    once; no answer at all (connection refused) keeps waiting.
    """
    if healthy_threshold < 1:
        raise ValueError("healthy_threshold must be at least 1")
    if interval < 0 or timeout <= 0:
        raise ValueError("interval must be >= 0 and timeout > 0")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    counting_from = loop.time() + (fail_fast.start_period if fail_fast is not None else 0.0)
    wrong = WrongAnswers(fail_fast.threshold, fail_fast.expect_status) if fail_fast else None
    passes = 0
    last: CheckResult | None = None

    def last_seen() -> str:
        return f"last check: {last.detail}" if last is not None else "no check completed"

    while True:
        if is_alive is not None and not await is_alive():
            raise HealthCheckError(
                f"instance is not running (it exited or is crash-looping); {last_seen()}",
                hint="look at the instance's log for why it stopped",
            )
        started = loop.time()
        remaining = deadline - started
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                last = await check.run()
        except TimeoutError:
            break
        passes = passes + 1 if last.ok else 0
        if passes >= healthy_threshold:
            return last
        if wrong is not None and wrong.observe(last.answer, started >= counting_from):
            assert fail_fast is not None and last.answer is not None
            message, hint = explain(
                last.answer,
                wrong.count,
                fail_fast.url,
                fail_fast.expect_status,
                fail_fast.logs_command,
            )
            raise WrongAnswerError(message, hint=hint)
        pause = min(interval - (loop.time() - started), deadline - loop.time())
        if pause > 0:
            await asyncio.sleep(pause)
        elif deadline <= loop.time():
            break

    raise HealthCheckError(
        f"not healthy after {timeout:g} s ({passes}/{healthy_threshold} consecutive passes); "
        f"{last_seen()}",
        hint="look at the instance's log; if it only needs longer to start, "
        "raise the health timeout in conveyor.yml",
    )
