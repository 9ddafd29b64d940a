"""End to end: run lines written as a Procfile writes them, the instance port range, and
the warning about an instance listening on every interface."""

from __future__ import annotations

import os
import random
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.apps import SERVER, make_app

pytestmark = pytest.mark.slow

# The server takes its port from its command line only: it answers only when
# Conveyor put the port into the argv ($PORT in a list, ${PORT} in a shell string).
CONFIG = """\
project: tiny
ports: ${PORTS}
services:
  bare:
    run: [python3, server.py, --port, $PORT]
    route: {path: /bare}
    health: {type: http, path: /health, interval: 200ms}
  braced:
    run: exec python3 server.py --port ${PORT} --host 0.0.0.0
    route: {path: /braced}
    health: {type: http, path: /health, interval: 200ms}
environments:
  staging:
    listen: ${LISTEN}
"""


def test_procfile_style_run_lines_deploy_on_ports_of_the_range_and_wide_listeners_warn(
    tmp_path: Path,
) -> None:
    low = random.randrange(30000, 32000)
    ports = range(low, low + 20)
    app = make_app(tmp_path, CONFIG, {"server.py": SERVER})
    app.env["PORTS"] = f"{ports.start}-{ports.stop - 1}"
    try:
        deployed = app.run("deploy", "staging", "--build")
        answers = {}
        for service in ("bare", "braced"):
            address = f"http://{app.env['LISTEN']}/{service}/hello"
            with urllib.request.urlopen(address, timeout=10) as response:
                answers[service] = response.read().decode()
        report = app.json("status", "staging")
    finally:
        app.shutdown()
    instances = {
        s["name"]: s["instances"][0]
        for s in report["environments"][0]["services"]  # type: ignore[index]
    }
    for service, answer in answers.items():
        port = instances[service]["port"]
        assert port in ports
        assert answer == f"answer 200 from port {port}\n"
    output = deployed.stdout + deployed.stderr
    wide = re.findall(r"\[(\w+)\] warning: \S+ listens on all interfaces \(([\d.:]+)\)", output)
    assert wide == [("braced", f"0.0.0.0:{instances['braced']['port']}")], output
    assert "$HOST" in output


SECRET_CONFIG = """\
project: tiny
services:
  web:
    run: [python3, server.py, --port, $PORT]
    env: {API_TOKEN: "${API_TOKEN}"}
    health: {type: http, path: /health, interval: 200ms}
environments:
  staging:
    listen: ${LISTEN}
"""


def test_a_running_environment_is_shown_and_stopped_without_the_variables_it_started_with(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path, SECRET_CONFIG, {"server.py": SERVER})
    try:
        app.run("deploy", "staging", "--build", env={"API_TOKEN": "s3cr3t-t0ken"})
        # Another shell, without the token: looking and stopping need none of it.
        report = app.json("status", "staging")
        web = report["environments"][0]["services"][0]  # type: ignore[index]
        assert web["healthy"] == 1
        assert app.json("history", "staging")[0]["status"] == "succeeded"  # type: ignore[index]
        refused = app.run("deploy", "staging", check=False)
        assert refused.returncode == 2
        assert 'services/web/env/API_TOKEN: environment variable "API_TOKEN" is not set' in (
            refused.stderr
        )
        down = app.run("down", "staging", "--yes")
        assert "staging is down" in down.stdout
        assert app.json("status", "staging")["environments"][0]["services"][0]["instances"] == []  # type: ignore[index]
    finally:
        app.shutdown()


def test_the_log_lines_of_a_failed_instance_hide_its_secrets(tmp_path: Path) -> None:
    """Regression: the last log lines shown when an instance never got healthy printed
    whatever the app logged, its secrets included."""
    app = make_app(
        tmp_path,
        """\
project: leaky
services:
  web:
    source: .
    run: python3 crash.py
    env: {API_TOKEN: "${API_TOKEN}"}
    deploy_timeout: 20s
environments:
  staging: {listen: "${LISTEN}"}
""",
        {
            "crash.py": "import os, sys\nprint('settings: token', os.environ['API_TOKEN'])\nsys.exit(1)\n"
        },
    )
    token = "tok-5ecret-value-77"
    try:
        failed = app.run("deploy", "staging", "--build", check=False, env={"API_TOKEN": token})
        (record,) = app.json("history", "staging")  # type: ignore[misc]
    finally:
        app.shutdown()
    assert failed.returncode == 1 and "settings: token ***" in failed.stderr, failed.stderr
    assert token not in failed.stdout + failed.stderr
    assert token not in record["error"]


def test_an_instance_that_dies_after_it_counted_as_started_fails_fast(tmp_path: Path) -> None:
    """Regression: a process exiting just after supervisord's start-up second (Next.js says
    "Ready", then its config throws) was restarted for ever, and the deploy waited the whole
    deploy_timeout."""
    app = make_app(
        tmp_path,
        """\
project: flappy
services:
  web:
    source: .
    run: python3 flap.py
    deploy_timeout: 120s
environments:
  staging: {listen: "${LISTEN}"}
""",
        {"flap.py": "import sys, time\nprint('Ready', flush=True)\ntime.sleep(1.5)\nsys.exit(1)\n"},
    )
    started = time.monotonic()
    try:
        failed = app.run("deploy", "staging", "--build", check=False)
        took = time.monotonic() - started
    finally:
        app.shutdown()
    assert failed.returncode == 1 and "crash-looping" in failed.stderr, failed.stderr
    assert took < 60


# Starts the server in a session of its own and writes its pid: the server is then not
# the instance's process (nor one of its group), as a program that took the port would be.
STRANGER = """\
import os, subprocess, sys, time
server = subprocess.Popen(
    [sys.executable, "server.py", "--port", os.environ["PORT"]], start_new_session=True
)
open(os.environ["STRANGER_PID_FILE"], "w").write(str(server.pid))
time.sleep(3600)
"""


def test_health_checks_answered_by_another_program_than_the_instance_fail_the_deploy(
    tmp_path: Path,
) -> None:
    """Regression: a port taken by another program between Conveyor choosing it and the
    instance listening (another project's deploy on the same machine) passed the health
    checks with that program's answers, and the router sent it the instance's traffic."""
    shared = tmp_path / "shared"  # the instance may run as another user (Conveyor as root)
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    pid_file = shared / "stranger.pid"
    app = make_app(
        tmp_path,
        """\
project: crowded
services:
  web:
    source: .
    run: python3 stranger.py
    env: {STRANGER_PID_FILE: "${STRANGER_PID_FILE}"}
    health: {type: http, path: /health, interval: 200ms}
    deploy_timeout: 30s
environments:
  staging: {listen: "${LISTEN}"}
""",
        {"stranger.py": STRANGER, "server.py": SERVER},
    )
    app.env["STRANGER_PID_FILE"] = str(pid_file)
    try:
        failed = app.run("deploy", "staging", "--build", check=False)
        (record,) = app.json("history", "staging")  # type: ignore[misc]
    finally:
        app.shutdown()
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
    stranger = pid_file.read_text()
    assert failed.returncode == 1, failed.stderr
    assert re.search(
        rf"port \d+ of instance \S+ is held by another program: pid {stranger} \(\S*python\S* "
        r"server\.py --port \d+\); the health checks were its answers",
        failed.stderr,
    ), failed.stderr
    assert "deploy again (Conveyor chooses another port)" in failed.stderr
    assert record["status"] == "rolled_back"
