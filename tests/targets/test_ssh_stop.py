"""The one-round-trip stop of an instance on a host (`conveyor.targets.ssh_stop`), run here
with /bin/sh: supervisorctl (a stand-in that records its calls) stops, then the program's
process group is waited for (and killed after the stop timeout), then its files are
removed and supervisord updated. The SSH target's conformance suite runs it against
real supervisords on test hosts (tests/targets/test_ssh_target.py)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path, PurePosixPath

from conveyor.targets import ssh_stop


def stand_in(tmp_path: Path) -> list[str]:
    """A supervisorctl that appends its arguments to calls.log."""
    return ["sh", "-c", 'echo "$*" >> "$0"', str(tmp_path / "calls.log")]


def files(tmp_path: Path) -> tuple[Path, Path]:
    conf, launch = tmp_path / "web-1.conf", tmp_path / "web-1.launch.json"
    conf.write_text("[program:web-1]\n")
    launch.write_text("{}")
    return conf, launch


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_stop_waits_for_the_group_removes_the_files_then_updates(tmp_path: Path) -> None:
    conf, launch = files(tmp_path)
    # A process group that outlives the stop (supervisorctl's stand-in signals nothing):
    # the stop waits for it, and SIGKILLs the group after the timeout. It is this
    # process's child (setsid execs in place), reaped at once by a thread, as
    # supervisord reaps its own. Left alone, it sleeps a minute.
    group = subprocess.Popen(["setsid", "sleep", "60"])
    reaper = threading.Thread(target=group.wait, daemon=True)
    reaper.start()
    try:
        time.sleep(0.1)
        started = time.monotonic()
        done = run(
            ssh_stop.stop_argv(
                "web-1",
                group.pid,
                0.5,
                PurePosixPath(conf),
                PurePosixPath(launch),
                stand_in(tmp_path),
            )
        )
        took = time.monotonic() - started
        reaper.join(5)
    finally:
        if group.returncode is None:  # the stop failed: the sleep must not outlive the test
            group.kill()
            reaper.join(5)
    assert group.returncode == -9
    assert (done.returncode, done.stdout) == (0, "")
    assert 0.4 < took < 15  # the 0.5 s timeout, not the minute of the sleep
    assert (tmp_path / "calls.log").read_text().splitlines() == ["stop web-1", "update web-1"]
    assert not conf.exists() and not launch.exists()
    try:
        os.killpg(group.pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive


def test_a_program_not_running_is_removed_without_waiting(tmp_path: Path) -> None:
    conf, launch = files(tmp_path)
    argv = ssh_stop.stop_argv(
        "web-1", None, 60, PurePosixPath(conf), PurePosixPath(launch), stand_in(tmp_path)
    )
    assert argv[5] == ""  # no process group to wait for
    started = time.monotonic()
    assert run(argv).returncode == 0
    assert time.monotonic() - started < 15  # not the minute of the timeout
    assert (tmp_path / "calls.log").read_text().splitlines() == ["stop web-1", "update web-1"]
    assert not conf.exists() and not launch.exists()
