"""wait_until_healthy and make_check."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conveyor.checks.base import CheckResult
from conveyor.checks.command import CommandCheck
from conveyor.checks.http import HttpCheck
from conveyor.checks.tcp import TcpCheck
from conveyor.checks.wait import FailFast, fail_fast_for, make_check, wait_until_healthy
from conveyor.errors import HealthCheckError, WrongAnswerError


class ScriptedCheck:
    """Answers from a script; the subject here is the counting, not the check."""

    def __init__(self, outcomes: str) -> None:
        self.outcomes = outcomes  # "x" fail, "o" pass; the last one repeats
        self.runs = 0

    async def run(self) -> CheckResult:
        ok = self.outcomes[min(self.runs, len(self.outcomes) - 1)] == "o"
        self.runs += 1
        return CheckResult(ok, f"attempt {self.runs} {'ok' if ok else 'failed'}", 0.0)


def test_threshold_counts_consecutive_passes_only():
    check = ScriptedCheck("xooxooo")
    result = asyncio.run(wait_until_healthy(check, interval=0.01, healthy_threshold=3, timeout=5))
    assert check.runs == 7
    assert result == CheckResult(True, "attempt 7 ok", 0.0)


def test_threshold_of_one_returns_on_first_pass():
    check = ScriptedCheck("o")
    asyncio.run(wait_until_healthy(check, interval=10, healthy_threshold=1, timeout=5))
    assert check.runs == 1


def test_runs_every_interval(http_server):
    # /flaky answers 503 twice, then 200: passes on runs 3, 4 and 5.
    check = HttpCheck(f"{http_server.base}/flaky")
    start = time.monotonic()
    result = asyncio.run(wait_until_healthy(check, interval=0.2, healthy_threshold=3, timeout=10))
    elapsed = time.monotonic() - start
    assert result.ok
    assert http_server.hits["/flaky"] == 5
    # Four intervals between five runs: at least 0.8 s (load only adds to it), and far less
    # than the 8 s that intervals ten times too long would take.
    assert 0.75 <= elapsed < 8.0


def test_timeout_error_names_last_check_detail(http_server):
    check = HttpCheck(f"{http_server.base}/fail")
    start = time.monotonic()
    with pytest.raises(HealthCheckError) as info:
        asyncio.run(wait_until_healthy(check, interval=0.1, healthy_threshold=2, timeout=0.5))
    # /fail never passes: without the timeout, the wait would never end.
    assert 0.45 <= time.monotonic() - start < 15
    message = str(info.value)
    assert message.startswith("not healthy after 0.5 s (0/2 consecutive passes); last check: ")
    assert f"GET {http_server.base}/fail -> 503 in " in message
    assert message.endswith("(expected 200): database unreachable")
    assert info.value.hint


def test_timeout_abandons_an_attempt_running_at_the_deadline(http_server):
    # /slow hangs for a minute, as long as the attempt's own timeout: an attempt waited for
    # to its end would take that minute.
    check = HttpCheck(f"{http_server.base}/slow", timeout=60)
    start = time.monotonic()
    with pytest.raises(HealthCheckError, match="no check completed"):
        asyncio.run(wait_until_healthy(check, interval=0.1, healthy_threshold=1, timeout=0.3))
    assert time.monotonic() - start < 15


def test_not_running_instance_fails_at_once():
    check = ScriptedCheck("x")
    states = iter([True, True, False])

    async def is_alive() -> bool:
        return next(states)

    start = time.monotonic()
    with pytest.raises(HealthCheckError) as info:
        asyncio.run(
            wait_until_healthy(
                check, interval=0.01, healthy_threshold=1, timeout=60, is_alive=is_alive
            )
        )
    assert time.monotonic() - start < 15  # not at the timeout, a minute
    assert check.runs == 2
    assert "instance is not running" in str(info.value)
    assert "last check: attempt 2 failed" in str(info.value)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        asyncio.run(
            wait_until_healthy(ScriptedCheck("o"), interval=1, healthy_threshold=0, timeout=1)
        )


def test_make_check_http(http_server):
    port = http_server.server_address[1]
    health = SimpleNamespace(type="http", path="ok", expect_status=200, timeout=2.0)
    check = make_check(health, "127.0.0.1", port, Path("."), {})
    assert isinstance(check, HttpCheck)
    assert check.url == f"http://127.0.0.1:{port}/ok"
    assert check.timeout == 2.0
    assert asyncio.run(check.run()).ok


def test_make_check_http_ipv6_host():
    health = SimpleNamespace(type="http", path="/health", expect_status=204, timeout=1.0)
    check = make_check(health, "::1", 8080, Path("."), {})
    assert isinstance(check, HttpCheck)
    assert (check.url, check.expect_status) == ("http://[::1]:8080/health", 204)


def test_make_check_tcp():
    health = SimpleNamespace(type="tcp", timeout=1.5)
    check = make_check(health, "127.0.0.1", 4001, Path("."), {})
    assert isinstance(check, TcpCheck)
    assert (check.host, check.port, check.timeout) == ("127.0.0.1", 4001, 1.5)


def test_make_check_shell_command_gets_port_host_env_and_cwd(tmp_path):
    health = SimpleNamespace(type="command", command='echo "$HOST:$PORT $APP $(pwd)"', timeout=5.0)
    check = make_check(health, "127.0.0.1", 4001, tmp_path, {"APP": "shop", "PORT": "1"})
    assert isinstance(check, CommandCheck)
    assert check.argv[:2] == ["/bin/sh", "-c"]
    result = asyncio.run(check.run())
    assert result.ok
    assert result.detail.endswith(f": 127.0.0.1:4001 shop {tmp_path}")


def test_make_check_argv_command_gets_instance_variables_but_no_shell(tmp_path):
    # Conveyor fills in its own variables ($PORT as a Procfile writes it); the rest
    # is passed as written, since no shell runs.
    health = SimpleNamespace(type="command", command=["echo", "${HOST}:$PORT", "$APP"], timeout=5)
    check = make_check(health, "127.0.0.1", 4001, tmp_path, {"APP": "shop"})
    result = asyncio.run(check.run())
    assert result.detail.endswith(": 127.0.0.1:4001 $APP")


def test_make_check_unknown_type():
    with pytest.raises(ValueError, match="unknown health check type 'grpc'"):
        make_check(SimpleNamespace(type="grpc", timeout=1.0), "127.0.0.1", 1, Path("."), {})


def _fail_fast(url: str, threshold: int = 3, start_period: float = 0.0) -> FailFast:
    return FailFast(url, 200, threshold, start_period, "conveyor logs staging api")


def test_the_same_wrong_answer_fails_fast_with_a_hint(http_server):
    url = f"{http_server.base}/fail"
    start = time.monotonic()
    with pytest.raises(WrongAnswerError) as info:
        asyncio.run(
            wait_until_healthy(
                HttpCheck(url),
                interval=0.05,
                healthy_threshold=1,
                timeout=60,
                fail_fast=_fail_fast(url),
            )
        )
    assert time.monotonic() - start < 15  # not at the timeout, a minute
    assert http_server.hits["/fail"] == 3
    assert str(info.value) == (
        f"GET {url} answered 503 Service Unavailable 3 times in a row (expected 200); "
        'body: "database unreachable"'
    )
    assert "conveyor logs staging api" in (info.value.hint or "")


def test_wrong_answers_of_the_start_period_do_not_count(http_server):
    # /flaky answers 503 twice, then 200: a booting app, within its start period.
    url = f"{http_server.base}/flaky"
    result = asyncio.run(
        wait_until_healthy(
            HttpCheck(url),
            interval=0.05,
            healthy_threshold=1,
            timeout=10,
            fail_fast=_fail_fast(url, threshold=1, start_period=5),
        )
    )
    assert result.ok


def test_connection_refused_keeps_waiting_until_the_timeout(free_port):
    url = f"http://127.0.0.1:{free_port}/health"
    start = time.monotonic()
    with pytest.raises(HealthCheckError) as info:
        asyncio.run(
            wait_until_healthy(
                HttpCheck(url),
                interval=0.05,
                healthy_threshold=1,
                timeout=0.6,
                fail_fast=_fail_fast(url, threshold=1),
            )
        )
    assert time.monotonic() - start >= 0.55
    assert not isinstance(info.value, WrongAnswerError)
    assert "connection refused" in str(info.value)


def test_fail_fast_applies_to_http_checks_only(http_server):
    port = http_server.server_address[1]
    http = SimpleNamespace(
        type="http",
        path="/ok",
        expect_status=200,
        timeout=2.0,
        unhealthy_threshold=4,
        start_period=7.0,
    )
    check = make_check(http, "127.0.0.1", port, Path("."), {"APP_SECRET": "s3cr3t"})
    rule = fail_fast_for(http, check, "conveyor logs s a")
    assert rule == FailFast(f"http://127.0.0.1:{port}/ok", 200, 4, 7.0, "conveyor logs s a")
    assert isinstance(check, HttpCheck) and check.secrets == ("s3cr3t",)
    tcp = SimpleNamespace(type="tcp", timeout=2.0)
    assert fail_fast_for(tcp, make_check(tcp, "127.0.0.1", port, Path("."), {}), "x") is None
