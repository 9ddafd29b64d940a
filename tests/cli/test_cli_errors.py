"""The CLI turns user mistakes into messages and exit codes, never tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """
project: demo
services:
  app:
    run: [python3, app.py]
environments:
  dev:
    listen: 127.0.0.1:18112
"""


def conveyor(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "CONVEYOR_HOME": str(cwd / "h")},
        timeout=60,
    )


def test_version(tmp_path: Path) -> None:
    result = conveyor(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.startswith("conveyor ")


def test_bad_config_exits_2_with_key_path(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(
        GOOD.replace("    run:", "    health: {type: http, interval: fast}\n    run:")
    )
    result = conveyor(tmp_path, "validate")
    assert result.returncode == 2
    assert (
        'services/app/health/interval: expected a duration like "5s", got "fast"' in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_missing_config_exits_2(tmp_path: Path) -> None:
    result = conveyor(tmp_path, "status")
    assert result.returncode == 2
    assert "no conveyor.yml found" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("deploy", "prod"), 'unknown environment "prod" (environments are: dev)'),
        (("history", "nope"), 'unknown environment "nope"'),
        (("deploy", "dev"), 'service "app" has no release yet'),
        (("rollback", "dev"), "no earlier successful deployment"),
        (("resume", "dev"), "dev has no unfinished deployment"),
        (("releases", "ghost"), 'unknown service "ghost"'),
        (("deploy", "dev", "-r", "app"), "--release expects SERVICE=RELEASE"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    (tmp_path / "conveyor.yml").write_text(GOOD)
    result = conveyor(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_confirmation_without_terminal_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(GOOD)
    result = conveyor(tmp_path, "down", "dev")
    assert result.returncode == 1
    assert "needs confirmation" in result.stderr and "--yes" in result.stderr


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(GOOD)
    result = conveyor(tmp_path, "deploy", "dev", "--frobnicate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_schema_is_json(tmp_path: Path) -> None:
    import json

    result = conveyor(tmp_path, "schema")
    assert result.returncode == 0
    assert "services" in json.loads(result.stdout)["properties"]


def test_lock_blocks_deploys_and_says_who(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(GOOD)
    assert conveyor(tmp_path, "lock", "acquire", "dev", "-m", "db maintenance").returncode == 0
    status = conveyor(tmp_path, "lock", "status", "dev")
    assert "db maintenance" in status.stdout
    again = conveyor(tmp_path, "lock", "acquire", "dev")
    assert again.returncode == 1 and "db maintenance" in again.stderr
    assert conveyor(tmp_path, "lock", "release", "dev").returncode == 0
    assert "not locked" in conveyor(tmp_path, "lock", "status", "dev").stdout


def test_usage_errors_leave_nothing_running(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(GOOD)
    assert conveyor(tmp_path, "deploy", "dev").returncode == 2
    assert conveyor(tmp_path, "rollback", "dev").returncode == 2
    assert not (tmp_path / "h" / "run" / "supervisor.sock").exists()
