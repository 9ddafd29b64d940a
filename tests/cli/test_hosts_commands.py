"""`conveyor hosts`, `hosts trust` and `setup` on environments they cannot work on: a
message and exit 2, no traceback, nothing reached. (Against real hosts:
tests/e2e/test_hosts_cli.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.plugins import TARGETS
from tests.support.project import cli_environment

CONFIG = """\
project: demo
services:
  app: {run: "serve $PORT"}
environments:
  dev: {listen: "127.0.0.1:18113"}
"""
FLEET = """\
  fleet:
    listen: "127.0.0.1:18114"
    target: ssh
    hosts: {inventory: "${CONVEYOR_TESTHOSTS}"}
"""


def conveyor(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_environment(cwd / "home")
    env.pop("CONVEYOR_TESTHOSTS", None)
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize("command", [["hosts"], ["hosts", "check"], ["hosts", "trust"], ["setup"]])
def test_an_environment_without_hosts(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    result = conveyor(tmp_path, *command, "dev")
    assert result.returncode == 2
    assert 'error: environment "dev" has no hosts (its target is "local")' in result.stderr
    assert "hint: hosts are for `target: ssh` environments" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "known_hosts").exists()


def test_an_unknown_environment(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    result = conveyor(tmp_path, "hosts", "prod", "--json")
    assert result.returncode == 2
    assert 'unknown environment "prod" (environments are: dev)' in result.stderr


@pytest.mark.skipif("ssh" not in TARGETS, reason="the ssh target is not registered")
def test_an_unset_inventory_variable_is_named(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(CONFIG + FLEET)
    result = conveyor(tmp_path, "setup", "fleet")
    assert result.returncode == 2
    assert (
        'environments/fleet/hosts/inventory: environment variable "CONVEYOR_TESTHOSTS" is not set'
        in result.stderr
    )
    # Only the hosts of the environment asked about need it: the file still loads.
    other = conveyor(tmp_path, "hosts", "dev")
    assert 'environment "dev" has no hosts' in other.stderr
