"""The SSH target's pure parts: program files, argv of what runs on a host, parsing
`supervisorctl status`, and the on-host release check (run here with this python3 on
real sealed trees, against `conveyor.releases.seal`)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from conveyor.errors import TargetError
from conveyor.releases import seal
from conveyor.ssh.hosts import HostSpec
from conveyor.ssh.layout import RemoteLayout
from conveyor.targets import ssh_programs, ssh_ship
from conveyor.targets.base import RUNNING, STOPPED
from conveyor.targets.program_conf import LAUNCHER

HOME = PurePosixPath("/home/deploy")
PROGRAMS = HOME / ".conveyor/shop/supervisor/programs"


def test_a_program_file_runs_the_launcher_with_the_env_and_the_hosts_paths() -> None:
    program = ssh_programs.render_program(
        "staging-web-r1-1",
        ["python3", "app.py", "--port", "8001"],
        HOME / ".conveyor/shop/releases/web/r1",
        {"PORT": "8001", "TOKEN": "s3cret"},
        HOME / ".conveyor/shop/logs/instances/staging-web-r1-1.log",
        7.5,
        PROGRAMS / "staging-web-r1-1.launch.json",
    )
    assert program.launch is None
    lines = program.conf.splitlines()
    assert lines[0] == (
        '; conveyor-meta: {"autorestart": true, "launch": null, "log": '
        '"/home/deploy/.conveyor/shop/logs/instances/staging-web-r1-1.log", '
        '"owner": "instance", "stop_timeout": 7.5}'
    )
    assert lines[1] == "[program:staging-web-r1-1]"
    assert lines[2].startswith("command=python3 -I -S -c ")
    assert lines[2].endswith(" -- python3 app.py --port 8001")
    assert lines[3:] == [
        "directory=/home/deploy/.conveyor/shop/releases/web/r1",
        'environment=PORT="8001",TOKEN="s3cret"',
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        "startretries=3",
        "stopsignal=TERM",
        "stopwaitsecs=8",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        "stdout_logfile=/home/deploy/.conveyor/shop/logs/instances/staging-web-r1-1.log",
        "stdout_logfile_maxbytes=10MB",
        "stdout_logfile_backups=2",
    ]


def test_a_worker_gets_its_stop_signal_alone_and_sigkill_as_a_group() -> None:
    # Celery's warm shutdown: the main process has its pool finish the running tasks; a
    # TERM of their own would kill them mid-task (WorkerLostError, the task lost).
    program = ssh_programs.render_program(
        "staging-worker-r1-1",
        [".venv/bin/celery", "-A", "tasks", "worker"],
        HOME / ".conveyor/shop/releases/worker/r1",
        {},
        HOME / "w.log",
        600,
        PROGRAMS / "staging-worker-r1-1.launch.json",
        stop_signal="INT",
        stop_as_group=False,
    )
    lines = program.conf.splitlines()
    assert "stopsignal=INT" in lines and "stopwaitsecs=600" in lines
    assert "stopasgroup=false" in lines and "killasgroup=true" in lines


def test_what_supervisor_syntax_cannot_carry_goes_to_a_launch_file() -> None:
    launch = PROGRAMS / "w-1.launch.json"
    program = ssh_programs.render_program(
        "w-1",
        ["sh", "-c", "echo a\necho b"],
        HOME,
        {"Q": "both ' and \""},
        HOME / "w.log",
        1,
        launch,
    )
    assert program.launch is not None
    assert json.loads(program.launch) == {
        "argv": ["sh", "-c", "echo a\necho b"],
        "env": {"Q": "both ' and \""},
    }
    command = program.conf.splitlines()[2]
    assert command.endswith(f" {launch}") and "environment=" not in program.conf


def test_the_launcher_is_the_local_targets_own() -> None:
    program = ssh_programs.render_program(
        "w-1", ["true"], HOME, {}, HOME / "w.log", 1, PROGRAMS / "w-1.launch.json"
    )
    assert "prctl(1,int(signal.SIGTERM))" in LAUNCHER
    assert "prctl(1,int(signal.SIGTERM))" in program.conf


def test_supervisord_starts_with_absolute_paths_and_no_pythonpath_for_its_programs() -> None:
    argv = RemoteLayout("shop").supervisord(HOME)
    assert argv[:5] == ["env", "-u", "PYTHONPATH", "python3", "-c"]
    assert argv[6:] == [
        "/home/deploy/.conveyor/shop/lib",
        "-c",
        "/home/deploy/.conveyor/shop/supervisor/supervisord.conf",
    ]


def test_one_off_commands_get_their_env_on_stdin_only() -> None:
    argv = ssh_programs.command_argv(["manage.py", "migrate"], HOME / "r1", HOME, 90)
    assert argv == [
        "env",
        "-i",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "LANG=C.UTF-8",
        "HOME=/home/deploy",
        "timeout",
        "-k",
        "5",
        "90",
        "sh",
        "-c",
        'set -a; . /dev/stdin; set +a; [ -z "$DATA_DIR" ] || (umask 077; mkdir -p "$DATA_DIR");'
        ' cd "$1" || exit 127; shift; exec "$@" 2>&1',
        "sh",
        "/home/deploy/r1",
        "manage.py",
        "migrate",
    ]
    script = ssh_programs.env_script({"A": "it's $x", "B": "line\nbreak"})
    assert script == "A='it'\"'\"'s $x'\nB='line\nbreak'\n"
    shell = subprocess.run(
        ["sh", "-c", 'set -a; . /dev/stdin; set +a; printf "%s|%s" "$A" "$B"'],
        input=script,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == "it's $x|line\nbreak"
    with pytest.raises(TargetError, match=r"invalid environment variable names \['1X'\]"):
        ssh_programs.env_script({"1X": "v"})


def test_supervisorctl_status_is_parsed() -> None:
    output = (
        "web-1                            RUNNING   pid 4321, uptime 1 day, 2:03:04\n"
        "web-2                            STARTING  \n"
        "web-3                            FATAL     Exited too quickly (process log may have "
        "details)\n"
        "web-4                            STOPPING  \n"
        "nope: ERROR (no such process)\n"
    )
    found = ssh_programs.parse_status(output, 200_000.0)
    assert sorted(found) == ["web-1", "web-2", "web-3", "web-4"]
    assert found["web-1"].state == RUNNING and found["web-1"].pid == 4321
    assert found["web-1"].started_at == 200_000.0 - (86400 + 2 * 3600 + 3 * 60 + 4)
    assert found["web-3"].state == "fatal"
    assert found["web-3"].detail.startswith("Exited too quickly")
    assert found["web-4"].state == STOPPED and found["web-4"].detail == "stopping"


def test_free_port_and_rsync_argv() -> None:
    argv = ssh_programs.free_port_argv("10.0.0.5", [8001, 8002])
    assert argv[0:3] == ["python3", "-S", "-c"] and argv[4:] == ["10.0.0.5", "8001", "8002"]
    host = HostSpec("web1", "10.0.0.5", "deploy", 2222, Path("/keys/id"))
    assert ssh_ship.rsync_argv(
        host,
        Path("/home/me/.conveyor/known_hosts"),
        Path("/rel/web/r2"),
        PurePosixPath("/home/deploy/.conveyor/shop/releases/web/.r2.incoming"),
        "/home/deploy/.conveyor/shop/releases/web/r1",
    ) == [
        "rsync",
        "--archive",
        "--delete",
        "--compress",
        "--hard-links",
        "--checksum",
        "--link-dest=/home/deploy/.conveyor/shop/releases/web/r1",
        "--rsh",
        "ssh -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=yes "
        "-o UserKnownHostsFile=/home/me/.conveyor/known_hosts "
        "-o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=10 "
        "-o ServerAliveInterval=2 -o ServerAliveCountMax=3 "
        "-o IdentitiesOnly=yes -i /keys/id",
        "/rel/web/r2/",
        "deploy@10.0.0.5:/home/deploy/.conveyor/shop/releases/web/.r2.incoming/",
    ]


# -- the on-host check, run here ------------------------------------------------------


def sealed(tmp_path: Path, name: str = "r1") -> tuple[Path, str]:
    root = tmp_path / "releases" / "web" / name
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("print('hi')\n")
    (root / "pkg" / "run").write_text("#!/bin/sh\n")
    (root / "pkg" / "run").chmod(0o755)
    (root / "link").symlink_to("app.py")
    digest = seal.record(root, ["cache"]).digest
    (root / "cache" / "scratch").write_text("not in the digest")
    (root / seal.MANIFEST).write_text(json.dumps({"writable": ["cache"]}))
    return root, digest


def verify(staging: Path, final: Path, digest: str) -> ssh_ship.Verified:
    done = subprocess.run(
        [
            sys.executable,
            *ssh_ship.verify_argv(PurePosixPath(staging), PurePosixPath(final), digest)[1:],
        ],
        input=ssh_ship.VERIFY,
        capture_output=True,
        text=True,
        check=True,
    )
    return ssh_ship.parse_verified(done.stdout)


def test_the_host_check_computes_the_builders_digest_and_seals(tmp_path: Path) -> None:
    root, digest = sealed(tmp_path)
    final = root.with_name("r1-final")
    found = verify(root, final, digest)
    assert (found.state, found.files) == ("ok", 3)
    assert not root.exists() and final.is_dir()
    assert oct(final.stat().st_mode & 0o777) == "0o500"
    assert oct((final / "pkg" / "run").stat().st_mode & 0o777) == "0o555"
    assert oct((final / "app.py").stat().st_mode & 0o777) == "0o444"
    assert (final / "cache").stat().st_mode & 0o200  # writable stays writable
    assert verify(final, final, digest).state == "ok"  # in place and intact


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda r: (r / "app.py").write_text("print('other')\n"), "modified: app.py"),
        (lambda r: (r / "extra.txt").write_text("x"), "added: extra.txt"),
        (lambda r: (r / "pkg" / "run").chmod(0o644), "the digest differs"),
    ],
)
def test_a_changed_release_is_removed_and_the_files_named(
    tmp_path: Path, change: object, named: str
) -> None:
    root, digest = sealed(tmp_path)
    change(root)  # type: ignore[operator]
    found = verify(root, root.with_name("r1-final"), digest)
    assert found.state == "bad" and named in found.changes
    assert not root.exists() and not root.with_name("r1-final").exists()


def test_the_newest_other_release_is_offered_for_linking(tmp_path: Path) -> None:
    old, _ = sealed(tmp_path, "r0")
    missing = tmp_path / "releases" / "web" / "r9"
    found = verify(missing, missing, "0" * 64)
    assert found.state == "missing" and found.previous == str(old)


def test_supervisorctl_saying_no_supervisord_answers_is_recognised() -> None:
    from conveyor.targets.ssh_programs import supervisord_gone

    sock = "unix:///home/deploy/.conveyor/shop/run/supervisor.sock"
    assert supervisord_gone(f"{sock} refused connection\n")
    assert supervisord_gone(f"{sock} no such file\n")
    assert supervisord_gone(
        "error: <class 'ConnectionRefusedError'>, [Errno 111] Connection refused: file: "
        "/home/deploy/.conveyor/shop/lib/supervisor/xmlrpc.py line: 557\n"
    )
    assert not supervisord_gone("fleet-api-1a2b-1: added process group\n")
    assert not supervisord_gone("fleet-api-1a2b-1  RUNNING   pid 42, uptime 0:00:03\n")
    assert not supervisord_gone("fleet-api-1a2b-1: ERROR (no such file)\n")


def test_the_free_port_probe_skips_ports_in_use_and_names_other_errors() -> None:
    """The probe the SSH target reserves ports with and a remote router checks its listen
    address with, run here with this machine's python3."""
    with socket.socket() as busy, socket.socket() as closed:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        closed.bind(("127.0.0.1", 0))
        free = closed.getsockname()[1]
        closed.close()
        taken = busy.getsockname()[1]
        argv = ssh_programs.free_port_argv("127.0.0.1", [taken, free])
        assert subprocess.run(argv, capture_output=True, text=True).stdout == f"{free}\n"
        alone = ssh_programs.free_port_argv("127.0.0.1", [taken])
        done = subprocess.run(alone, capture_output=True, text=True)
        assert (done.returncode, done.stdout) == (0, "")
    foreign = ssh_programs.free_port_argv("10.77.255.254", [free])  # no address of this machine
    done = subprocess.run(foreign, capture_output=True, text=True)
    assert done.returncode != 0 and "assign requested address" in done.stderr
