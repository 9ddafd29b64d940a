"""CommandSource with real commands."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from conveyor.sources import CommandSource, MetricSourceError


def read(command: str | list[str], timeout: float = 10.0, **kwargs: object) -> float:
    return asyncio.run(CommandSource(command, timeout, **kwargs).read())  # type: ignore[arg-type]


def error(command: str | list[str], timeout: float = 10.0, **kwargs: object) -> str:
    with pytest.raises(MetricSourceError) as caught:
        read(command, timeout, **kwargs)
    return caught.value.message


def test_the_last_line_of_stdout_is_the_number() -> None:
    assert read("echo 0.25") == 0.25
    assert read(["/bin/echo", "-3e-2"]) == -0.03
    script = "echo starting; echo warming up >&2; printf '12\\n  42  \\n\\n'; echo done >&2"
    assert read(script) == 42.0


def test_env_and_cwd(tmp_path: Path) -> None:
    (tmp_path / "depth").write_text("17\n")
    assert read("cat depth", cwd=tmp_path) == 17.0
    assert read('echo "$DEPTH"', env={"DEPTH": "5"}) == 5.0


def test_failures_are_explained(tmp_path: Path) -> None:
    script = "echo 1; echo a >&2; echo b >&2; echo c >&2; echo 'last words' >&2; exit 3"
    assert error(script) == f'command "{script}": exit 3: b | c | last words'
    assert error("exit 2") == 'command "exit 2": exit 2, nothing on stderr'
    assert (
        error("kill -TERM $$") == 'command "kill -TERM $$": killed by signal 15, nothing on stderr'
    )
    assert error("true") == 'command "true": printed nothing on stdout'
    assert error("echo; echo '  '") == "command \"echo; echo '  '\": printed nothing on stdout"
    assert error("echo 42 requests") == (
        'command "echo 42 requests": last line of stdout: expected a number, got "42 requests"'
    )
    assert (
        error("echo nan")
        == 'command "echo nan": last line of stdout: the value is NaN (no data, or 0/0)'
    )
    missing = "/nonexistent/conveyor-missing"  # short: long commands are cut in messages
    assert (
        error([missing, "--now"])
        == f'command "{missing} --now": cannot run: No such file or directory'
    )


def test_timeout_kills_the_command_and_its_children(tmp_path: Path) -> None:
    # Without the timeout the command would take a minute, and without the kill of its
    # process group its child would go on sleeping in tmp_path.
    script = "sleep 60 & sleep 60"
    start = time.monotonic()
    message = error(script, timeout=0.2, cwd=tmp_path)
    assert message == f'command "{script}": timed out after 0.2 s, killed'
    assert time.monotonic() - start < 15
    assert not _still_running_in(tmp_path)


def _still_running_in(directory: Path, wait: float = 5.0) -> list[int]:
    """The processes whose working directory is `directory` after at most `wait` seconds
    (a killed one may need a moment to be reaped; zombies do not count)."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if (
                    entry.name.isdigit()
                    and (entry / "cwd").readlink() == directory
                    and (entry / "stat").read_text().rsplit(") ", 1)[1][0] != "Z"
                ):
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_long_commands_are_cut_in_messages() -> None:
    script = "echo " + "x" * 100
    assert (
        error(script)
        == f'command "echo {"x" * 72}...": last line of stdout: expected a number, got "{"x" * 77}..."'
    )
