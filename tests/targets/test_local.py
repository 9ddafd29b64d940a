"""LocalTarget against a real supervisord per test (no mocks)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from conveyor.errors import TargetError
from conveyor.targets.base import BACKOFF, FATAL, RUNNING, STARTING, UNKNOWN, Target
from conveyor.targets.local import LocalTarget

from .conftest import PY, free_port, wait_until

SERVER = """
    import http.server, os
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"{os.environ['GREETING']} from {os.getpid()}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    print("listening", flush=True)
    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""

SLEEPER = """
    import time
    while True:
        time.sleep(1)
"""


def run(coro):
    return asyncio.run(coro)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def running_pid(target: LocalTarget, name: str) -> int:
    def pid() -> int | None:
        status = run(target.status(name))
        return status.pid if status.state in (STARTING, RUNNING) else None

    return wait_until(pid)


def test_local_target_satisfies_protocol(target):
    checked: Target = target
    assert checked is target


def test_start_http_instance_and_get_it(target, make_spec, script):
    port = free_port()
    spec = make_spec(
        "web-r1-1",
        [PY, str(script("server.py", SERVER))],
        env={"PORT": str(port), "GREETING": "hello"},
        port=port,
    )
    run(target.start(spec))

    def get() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
                return resp.read().decode()
        except OSError:
            return None

    body = wait_until(get)
    pid = running_pid(target, spec.name)
    assert body == f"hello from {pid}"
    status = wait_until(lambda: (s := run(target.status(spec.name))).state == RUNNING and s)
    assert status.pid == pid and status.restarts == 0
    assert status.started_at is not None and abs(status.started_at - time.time()) < 10
    assert [s.name for s in run(target.list())] == [spec.name]
    assert "listening" in run(target.logs(spec.name, 5))


def test_stop_one_of_two_keeps_the_other(target, make_spec, script):
    sleeper = str(script("sleep.py", SLEEPER))
    a, b = make_spec("a-1", [PY, sleeper]), make_spec("b-1", [PY, sleeper])
    run(target.start(a))
    run(target.start(b))
    pid_a, pid_b = running_pid(target, "a-1"), running_pid(target, "b-1")

    run(target.stop("a-1", 5))

    assert not pid_alive(pid_a)
    assert run(target.status("a-1")).state == UNKNOWN
    assert running_pid(target, "b-1") == pid_b and pid_alive(pid_b)
    assert [s.name for s in run(target.list())] == ["b-1"]


def test_stop_sends_sigterm_first(target, make_spec, script, tmp_path):
    marker = tmp_path / "terminated"
    ready = tmp_path / "ready"
    body = f"""
        import signal, sys, time
        def bye(signum, frame):
            open({str(marker)!r}, "w").write(str(signum))
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        open({str(ready)!r}, "w").close()
        while True:
            time.sleep(1)
    """
    trap = make_spec("trap-1", [PY, str(script("trap.py", body))], stop_timeout=60)
    run(target.start(trap))
    wait_until(ready.exists)

    started = time.monotonic()
    run(target.stop("trap-1", 60))

    assert time.monotonic() - started < 15  # it exited on SIGTERM, not at the minute's SIGKILL
    assert marker.read_text() == str(int(signal.SIGTERM))


@pytest.mark.parametrize(("spec_timeout", "stop_timeout"), [(1.0, 1.0), (60.0, 0.5)])
def test_stop_kills_a_program_ignoring_sigterm_after_timeout(
    target, make_spec, script, tmp_path, spec_timeout, stop_timeout
):
    ready = tmp_path / "ready"
    body = f"""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(ready)!r}, "w").close()
        while True:
            time.sleep(1)
    """
    spec = make_spec(
        "stubborn-1", [PY, str(script("stubborn.py", body))], stop_timeout=spec_timeout
    )
    run(target.start(spec))
    wait_until(ready.exists)
    pid = running_pid(target, spec.name)

    started = time.monotonic()
    run(target.stop(spec.name, stop_timeout))
    elapsed = time.monotonic() - started

    # Load only makes it later; supervisord's own SIGKILL would come after the spec's minute
    # (or, without one, its default 10 s).
    assert stop_timeout - 0.05 <= elapsed < stop_timeout + 8
    assert not pid_alive(pid)


def pids_running(text: str) -> list[int]:
    """The pids whose command line contains `text` (a process may exit while we look)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:  # it exited between the listing and the read
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def test_shell_wrapped_command_gets_the_signal_as_a_group(target, make_spec, script, tmp_path):
    sleeper = script("sleep.py", SLEEPER)
    # The shell stays (two commands), so the python is its child, not the program's pid.
    spec = make_spec("shell-1", ["/bin/sh", "-c", f"{PY} {sleeper}; echo never"])
    run(target.start(spec))
    running_pid(target, spec.name)
    child = wait_until(lambda: pids_running(str(sleeper)))[0]

    run(target.stop(spec.name, 5))

    wait_until(lambda: not pid_alive(child), timeout=3)


def test_crashing_instance_is_restarted_and_counted(target, make_spec, script):
    body = """
        import sys, time
        print("starting", flush=True)
        time.sleep(0.2)
        sys.exit(1)
    """
    spec = make_spec("crash-1", [PY, str(script("crash.py", body))])
    run(target.start(spec))

    status = wait_until(lambda: (s := run(target.status(spec.name))).restarts >= 1 and s)

    assert status.state in (STARTING, BACKOFF, RUNNING, FATAL)
    # It died before startsecs (1 s): supervisord restarts it after a 1 s backoff.
    wait_until(lambda: run(target.logs(spec.name, 10)).count("starting") >= 2, timeout=5)


def test_env_values_with_special_characters_reach_the_process(
    target, make_spec, script, tmp_path, supervisor
):
    out = tmp_path / "env.json"
    body = f"""
        import json, os, sys, time
        keys = [k for k in os.environ if k.startswith("T_")]
        with open({str(out)!r} + ".tmp", "w") as f:
            json.dump({{"env": {{k: os.environ[k] for k in keys}}, "argv": sys.argv[1:]}}, f)
        os.replace({str(out)!r} + ".tmp", {str(out)!r})
        while True:
            time.sleep(1)
    """
    path = str(script("dump.py", body))
    plain = {
        "T_SPACES": "a b  c",
        "T_DOUBLE": 'say "hi" now',
        "T_SINGLE": "it's",
        "T_COMMA": "a,b,c",
        "T_EQUALS": "k=v=w",
        "T_PERCENT": "100% %(ENV_HOME)s %%",
        "T_EMPTY": "",
        "T_URL": "postgres://u:p@h:5432/db?sslmode=require&x=1",
        "T_HASH_SEMI": "a#b;c",
        "T_EDGE_SPACES": " padded ",
    }
    argv_extra = ["two words", "it's", '"quoted"', "%(program_name)s", "", "semi;colon"]
    run(target.start(make_spec("env-1", [PY, path, *argv_extra], env=plain)))
    seen = json.loads(wait_until(lambda: out.exists() and out.read_text()))
    assert seen == {"env": plain, "argv": argv_extra}
    # Carried by supervisor's own config syntax, without the launcher.
    assert not (supervisor.programs_dir / "env-1.launch.json").exists()
    run(target.stop("env-1", 5))

    out.unlink()
    awkward = {
        "T_NEWLINE": "line1\nline2",
        "T_BOTH_QUOTES": """he said "it's" """,
        "T_QUOTED": '"fully quoted"',
        "T_COMMENT": "value ;comment #too",
        "T_UNICODE": "héllo ☃",
        "T_PERCENT": "50%",
    }
    argv_awkward = ["a ; b", "multi\nline", "%(here)s"]
    run(target.start(make_spec("env-2", [PY, path, *argv_awkward], env=awkward)))
    seen = json.loads(wait_until(lambda: out.exists() and out.read_text()))
    assert seen == {"env": awkward, "argv": argv_awkward}
    launch = supervisor.programs_dir / "env-2.launch.json"
    assert launch.exists() and launch.stat().st_mode & 0o777 == 0o600
    assert supervisor.program_conf_path("env-2").stat().st_mode & 0o777 == 0o600


def test_start_and_stop_are_idempotent(target, make_spec, script):
    sleeper = str(script("sleep.py", SLEEPER))
    spec = make_spec("idem-1", [PY, sleeper], env={"A": "1"})
    run(target.start(spec))
    pid = running_pid(target, spec.name)
    run(target.start(spec))
    assert running_pid(target, spec.name) == pid

    changed = make_spec("idem-1", [PY, sleeper], env={"A": "2"})
    run(target.start(changed))
    new_pid = running_pid(target, spec.name)
    assert new_pid != pid and not pid_alive(pid)

    run(target.stop(spec.name, 5))
    run(target.stop(spec.name, 5))
    run(target.stop("never-existed", 5))
    assert run(target.status(spec.name)).state == UNKNOWN
    assert run(target.list()) == []


def test_programs_of_other_owners_are_invisible(target, supervisor, make_spec, script, paths):
    sleeper = str(script("sleep.py", SLEEPER))
    supervisor.add_program(
        "caddy", [PY, sleeper], paths.home, {}, paths.caddy_dir / "caddy.log", 5, owner="caddy"
    )
    run(target.start(make_spec("web-1", [PY, sleeper])))
    caddy_pid = wait_until(lambda: (i := supervisor.program_info("caddy")) and i.status.pid)

    assert [s.name for s in run(target.list())] == ["web-1"]
    assert run(target.status("caddy")).state == UNKNOWN
    run(target.stop("caddy", 1))
    assert supervisor.program_info("caddy").status.pid == caddy_pid
    with pytest.raises(TargetError, match="belongs to caddy"):
        run(target.start(make_spec("caddy", [PY, sleeper])))


def test_logs_tail_and_follow(target, make_spec, script):
    body = """
        import time
        for i in range(40):
            print(f"early {i}")
        print("partial", end="", flush=True)
        time.sleep(0.3)
        print(" done", flush=True)
        i = 0
        while True:
            print(f"tick {i}", flush=True)
            i += 1
            time.sleep(0.05)
    """
    spec = make_spec("talk-1", [PY, str(script("talk.py", body))])
    run(target.start(spec))
    wait_until(lambda: spec.log_path.exists() and "tick 6" in spec.log_path.read_text())

    tail = run(target.logs(spec.name, 5))
    assert len(tail) == 5 and all(line.startswith("tick ") for line in tail[:-1])
    early = spec.log_path.read_text().splitlines()[:41]
    assert early[-2:] == ["early 39", "partial done"]

    async def follow() -> list[str]:
        got: list[str] = []
        async for line in target.follow(spec.name, 2):
            got.append(line)
            if len(got) == 8:
                break
        return got

    got = run(follow())
    numbers = [int(line.split()[1]) for line in got]
    assert numbers == list(range(numbers[0], numbers[0] + 8)), got


def test_logs_of_a_file_without_instance(target, paths):
    # The rule: <home>/logs/instances/<name>.log, readable after the instance is gone.
    log = target.log_path_for("gone-1")
    assert log == paths.instance_logs / "gone-1.log"
    lines = [f"line {i} " + "x" * 200 for i in range(2000)]  # > several read blocks
    log.with_name("gone-1.log.1").write_text("old 1\nold 2\n")
    log.write_text("\n".join(lines) + "\nunterminated")
    assert run(target.logs("gone-1", 3)) == [lines[-2], lines[-1], "unterminated"]
    assert run(target.logs("gone-1", 1)) == ["unterminated"]
    log.write_text("only\n")
    assert run(target.logs("gone-1", 3)) == ["old 1", "old 2", "only"]
    assert run(target.logs("missing-1", 3)) == []


def test_run_command_output_env_cwd_and_exit_code(target, tmp_path):
    result = run(
        target.run_command(
            ["/bin/sh", "-c", 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3'],
            tmp_path,
            {"GREETING": "hi there"},
            timeout=10,
        )
    )
    assert result.exit_code == 3 and not result.timed_out
    assert result.output == f"hi there from {tmp_path}\noops\n"


def test_run_command_timeout_kills_the_process_group(target, tmp_path):
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    result = run(
        target.run_command(
            ["/bin/sh", "-c", f"echo before; sleep 60 & echo $! > {pidfile}; wait"],
            tmp_path,
            {},
            timeout=1,  # from its start: time enough for the shell to write the pid file
        )
    )
    assert result.timed_out
    assert result.exit_code == -signal.SIGKILL
    assert time.monotonic() - started < 15  # not the minute of the sleep
    assert result.output == "before\n"
    child = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(child), timeout=5)


def test_run_command_missing_program_is_a_target_error(target, tmp_path):
    with pytest.raises(TargetError, match="no-such-program"):
        run(target.run_command(["no-such-program"], tmp_path, {}, timeout=5))


def test_start_with_missing_release_dir_is_a_target_error(target, make_spec, tmp_path):
    spec = make_spec("nodir-1", [PY, "-c", "pass"])
    bad = type(spec)(**{**spec.__dict__, "release_dir": tmp_path / "nope"})
    with pytest.raises(TargetError, match="does not exist"):
        run(target.start(bad))
