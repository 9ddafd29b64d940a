"""`LocalTarget.run_attached`: `conveyor run`'s one-off command, attached to our stdio."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from conveyor.errors import CommandNotRunError, TargetError
from conveyor.paths import Paths
from conveyor.targets.local import LocalTarget
from conveyor.targets.supervisor import Supervisor

from .conftest import PY


@pytest.fixture
def target(tmp_path: Path) -> LocalTarget:
    """No supervisord: an attached command does not go through it."""
    paths = Paths(tmp_path / "home")
    return LocalTarget(Supervisor(paths), paths)


def attached(target: LocalTarget, command: list[str], cwd: Path, env: dict[str, str]) -> int:
    return asyncio.run(target.run_attached(command, cwd, env))


def test_output_env_cwd_and_exit_code(
    target: LocalTarget, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = 'echo "$GREETING from $(pwd) ${SECRET_FROM_SHELL:-unset}"; echo oops >&2; exit 3'
    code = attached(target, ["/bin/sh", "-c", script], tmp_path, {"GREETING": "hi"})
    assert code == 3
    out, err = capfd.readouterr()
    assert out == f"hi from {tmp_path} unset\n" and err == "oops\n"


def test_the_deployers_shell_stays_out(
    target: LocalTarget,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-shell")
    monkeypatch.setenv("TERM", "xterm-test")
    code = attached(
        target, ["/bin/sh", "-c", 'echo "$TERM ${AWS_SECRET_ACCESS_KEY:-none}"'], tmp_path, {}
    )
    assert code == 0
    assert capfd.readouterr().out == "xterm-test none\n"


def test_killed_by_a_signal_exits_128_plus_n(target: LocalTarget, tmp_path: Path) -> None:
    assert attached(target, ["/bin/sh", "-c", "kill -TERM $$"], tmp_path, {}) == 128 + 15


def test_signal_handlers_are_restored(target: LocalTarget, tmp_path: Path) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # The child gets the default SIGINT (not our no-op handler, nor SIG_IGN).
    probe = "import signal; print(signal.getsignal(signal.SIGINT)); raise SystemExit(0)"
    assert attached(target, [PY, "-c", probe], tmp_path, {}) == 0
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_command_not_found_is_127(target: LocalTarget, tmp_path: Path) -> None:
    with pytest.raises(CommandNotRunError, match="command not found: no-such-program") as info:
        attached(target, ["no-such-program"], tmp_path, {})
    assert info.value.exit_code == 127


def test_not_executable_is_126(target: LocalTarget, tmp_path: Path) -> None:
    (tmp_path / "script.sh").write_text("echo hi\n")
    with pytest.raises(CommandNotRunError, match=r"cannot execute \./script\.sh") as info:
        attached(target, ["./script.sh"], tmp_path, {})
    assert info.value.exit_code == 126


def test_missing_release_dir_or_empty_command(target: LocalTarget, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="does not exist"):
        attached(target, ["true"], tmp_path / "gone", {})
    with pytest.raises(TargetError, match="empty"):
        attached(target, [], tmp_path, {})
