"""Supervisor (the supervisord client) against real supervisord processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conveyor.errors import TargetError
from conveyor.paths import Paths
from conveyor.targets.base import EXITED, FATAL, RUNNING, STARTING
from conveyor.targets.supervisor import Supervisor

from .conftest import PY, processes_mentioning, wait_until

SLEEPER = "import time\nwhile True:\n    time.sleep(1)\n"


def supervisord_pids(supervisor: Supervisor) -> list[int]:
    """The supervisord daemons of this home. A child it has forked to start a program
    carries its command line until it execs: that one is not a daemon of its own."""
    found = {
        pid
        for pid, cmd in processes_mentioning(str(supervisor.conf_path)).items()
        if "supervisord" in cmd
    }
    return sorted(pid for pid in found if _parent(pid) not in found)


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def add_sleeper(supervisor: Supervisor, tmp_path: Path, name: str, **kwargs) -> None:
    # One script per program: rewriting a shared one truncates it under a
    # program that is starting, which then runs an empty file and exits 0.
    script = tmp_path / f"sleep-{name}.py"
    script.write_text(SLEEPER)
    supervisor.add_program(
        name, [PY, str(script)], tmp_path, {}, tmp_path / f"{name}.log", 5, **kwargs
    )


def pid_of(supervisor: Supervisor, name: str) -> int:
    return wait_until(lambda: (i := supervisor.program_info(name)) and i.status.pid)


def test_ensure_running_starts_once_and_writes_private_socket(supervisor, paths):
    assert not supervisor.is_running()
    supervisor.ensure_running()
    supervisor.ensure_running()
    assert supervisor.is_running()
    assert len(supervisord_pids(supervisor)) == 1
    assert paths.supervisor_socket.stat().st_mode & 0o777 == 0o700
    conf = supervisor.conf_path.read_text()
    assert "files = programs/*.conf" in conf and "[rpcinterface:supervisor]" in conf


def test_concurrent_starts_from_threads_and_processes_give_one_supervisord(supervisor, paths):
    code = (
        "import sys; from pathlib import Path; from conveyor.paths import Paths;"
        "from conveyor.targets.supervisor import Supervisor;"
        "Supervisor(Paths(Path(sys.argv[1]))).ensure_running()"
    )
    procs = [subprocess.Popen([PY, "-c", code, str(paths.home)]) for _ in range(2)]
    threads = [threading.Thread(target=supervisor.ensure_running) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=20) for p in procs] == [0, 0]
    assert len(supervisord_pids(supervisor)) == 1


def test_killing_the_starting_process_group_leaves_supervisord_and_programs(
    supervisor, paths, tmp_path
):
    (tmp_path / "sleep.py").write_text(SLEEPER)
    code = f"""
import sys, time
from pathlib import Path
from conveyor.paths import Paths
from conveyor.targets.supervisor import Supervisor
s = Supervisor(Paths(Path({str(paths.home)!r})))
s.ensure_running()
s.add_program("survivor", [{PY!r}, {str(tmp_path / "sleep.py")!r}], Path({str(tmp_path)!r}),
              {{}}, Path({str(tmp_path / "survivor.log")!r}), 5)
print("ready", flush=True)
time.sleep(60)
"""
    starter = subprocess.Popen(
        [PY, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert starter.stdout is not None
    assert starter.stdout.readline().strip() == "ready"
    program_pid = pid_of(supervisor, "survivor")
    [daemon] = supervisord_pids(supervisor)

    os.killpg(starter.pid, signal.SIGKILL)  # Conveyor and its whole process group
    starter.wait(timeout=5)
    starter.stdout.close()
    time.sleep(0.3)

    assert supervisord_pids(supervisor) == [daemon]
    info = supervisor.program_info("survivor")
    assert info is not None and info.status.pid == program_pid
    assert info.status.state in (STARTING, RUNNING)


def test_adding_and_removing_programs_does_not_disturb_others(supervisor, tmp_path):
    add_sleeper(supervisor, tmp_path, "one")
    add_sleeper(supervisor, tmp_path, "two")
    one = pid_of(supervisor, "one")
    add_sleeper(supervisor, tmp_path, "three")
    pid_of(supervisor, "three")
    assert supervisor.remove_program("two") is True
    assert supervisor.remove_program("two") is False
    assert pid_of(supervisor, "one") == one
    assert [p.status.name for p in supervisor.all_programs()] == ["one", "three"]
    # Idempotent add: same config, same process.
    assert (
        supervisor.add_program(
            "one", [PY, str(tmp_path / "sleep-one.py")], tmp_path, {}, tmp_path / "one.log", 5
        )
        is False
    )
    assert pid_of(supervisor, "one") == one


def test_restarts_count_exits_after_running_and_not_requested_stops(supervisor, tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("import sys, time\ntime.sleep(0.2)\nsys.exit(1)\n")
    supervisor.add_program(
        "crash", [PY, str(script)], tmp_path, {}, tmp_path / "crash.log", 5, startsecs=0
    )
    info = wait_until(lambda: (i := supervisor.program_info("crash")).status.restarts >= 2 and i)
    assert info.status.state in (STARTING, RUNNING, EXITED)

    add_sleeper(supervisor, tmp_path, "calm")
    pid_of(supervisor, "calm")
    supervisor.remove_program("calm")  # a requested stop is no restart
    add_sleeper(supervisor, tmp_path, "calm")
    pid_of(supervisor, "calm")
    assert supervisor.program_info("calm").status.restarts == 0


def test_gave_up_program_reports_fatal_and_restarts_not_counting_the_last_exit(
    supervisor, tmp_path
):
    script = tmp_path / "die.py"
    script.write_text("import sys\nsys.exit(2)\n")
    supervisor.add_program(
        "die", [PY, str(script)], tmp_path, {}, tmp_path / "die.log", 5, startretries=1
    )
    info = wait_until(lambda: (i := supervisor.program_info("die")).status.state == FATAL and i)
    # Two failed starts (BACKOFF twice); only the first was followed by a restart.
    wait_until(lambda: supervisor.restarts("die") == 2)
    assert supervisor.program_info("die").status.restarts == 1
    assert info.status.pid is None
    # Adding it again after a fix starts it again (and resets the count).
    script.write_text(SLEEPER)
    supervisor.remove_program("die")
    supervisor.add_program(
        "die", [PY, str(script)], tmp_path, {}, tmp_path / "die.log", 5, startretries=1
    )
    pid_of(supervisor, "die")
    assert supervisor.program_info("die").status.restarts == 0


def test_shutdown_stops_programs_and_restart_brings_them_back(supervisor, tmp_path):
    add_sleeper(supervisor, tmp_path, "keep")
    first = pid_of(supervisor, "keep")
    supervisor.shutdown()
    assert not supervisor.is_running()
    assert supervisor.program_info("keep").status.detail.endswith("not running")

    supervisor.ensure_running()  # e.g. after a reboot: programs come back
    assert pid_of(supervisor, "keep") != first
    supervisor.shutdown(forget_programs=True)
    assert supervisor.program_info("keep") is None
    assert supervisor.all_programs() == []


def test_errors_are_target_errors(supervisor, tmp_path):
    with pytest.raises(TargetError, match="invalid program name"):
        supervisor.add_program("a:b", ["true"], tmp_path, {}, tmp_path / "x.log", 1)
    with pytest.raises(TargetError, match="invalid environment variable names"):
        supervisor.add_program("ok", ["true"], tmp_path, {"A-B": "1"}, tmp_path / "x.log", 1)
    with pytest.raises(TargetError, match="command is empty"):
        supervisor.add_program("ok", [], tmp_path, {}, tmp_path / "x.log", 1)
    # Not running: info calls answer without starting it.
    assert supervisor.program_info("nothing") is None
    assert not supervisor.is_running()


def test_supervisord_that_cannot_start_reports_its_log(tmp_path):
    paths = Paths(tmp_path / "home").ensure()
    paths.supervisor_socket.mkdir()  # nothing can listen there
    try:
        with pytest.raises(TargetError, match="did not start") as err:
            Supervisor(paths, start_timeout=1).ensure_running()
        assert "supervisord.start.log" in err.value.message
        assert err.value.hint
    finally:
        paths.supervisor_socket.rmdir()


def test_orphaned_supervisord_without_socket_is_reported(supervisor, paths):
    supervisor.ensure_running()
    [daemon] = supervisord_pids(supervisor)
    paths.supervisor_socket.unlink()  # e.g. a /tmp cleaner removed it
    try:
        with pytest.raises(TargetError, match=f"pid {daemon}.*does not answer") as err:
            Supervisor(paths, start_timeout=0.5).ensure_running()
        assert f"kill {daemon}" in (err.value.hint or "")
        assert supervisord_pids(supervisor) == [daemon]
    finally:
        os.kill(daemon, signal.SIGTERM)
        wait_until(lambda: not supervisord_pids(supervisor), timeout=10)


def test_event_listener_runs_as_module():
    # The listener command supervisord runs must import in a clean interpreter.
    result = subprocess.run(
        [sys.executable, "-m", "conveyor.targets.supervisor"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 1 and "listen-events" in result.stderr


def test_program_can_ask_for_another_stop_signal(supervisor, tmp_path):
    # HAProxy stops gracefully on USR1 (finish in-flight requests), not TERM.
    marker = tmp_path / "signal"
    ready = tmp_path / "ready"
    script = tmp_path / "usr1.py"
    script.write_text(
        "import signal, sys, time\n"
        "def bye(signum, frame):\n"
        f"    open({str(marker)!r}, 'w').write(str(signum))\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGUSR1, bye)\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    supervisor.add_program(
        "soft", [PY, str(script)], tmp_path, {}, tmp_path / "soft.log", 5, stop_signal="USR1"
    )
    wait_until(ready.exists)
    supervisor.remove_program("soft")
    assert marker.read_text() == str(int(signal.SIGUSR1))
    with pytest.raises(TargetError, match="unknown stop signal"):
        supervisor.add_program(
            "bad", [PY, str(script)], tmp_path, {}, tmp_path / "b.log", 5, stop_signal="STOP"
        )
