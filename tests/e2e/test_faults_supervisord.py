"""End to end, faults of the platform: supervisord killed with SIGKILL, a second router
on the environment's address, and `down` waiting until what it stopped has exited.

Real supervisord, Caddy or HAProxy and a real app (each answer names its release).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.paths import Paths
from conveyor.targets.listening import listening_inodes, listening_pids
from conveyor.targets.supervisor import Supervisor, pid_alive
from tests.support.apps import make_app
from tests.support.project import Project

pytestmark = pytest.mark.slow

# Answers with the release that runs it; `wrapped` keeps a shell as the program's
# process with the server as its child (a run line without `exec`), and that server
# takes 1.5 s to exit after SIGTERM.
SERVER = """\
import os, signal, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["CONVEYOR_RELEASE"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

if sys.argv[2:] == ["slow-exit"]:  # finishes its work for 1.5 s after SIGTERM
    signal.signal(signal.SIGTERM, lambda *_: threading.Timer(1.5, os._exit, (0,)).start())
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

CONFIG = """\
project: faults
services:
  web:
    run: [python3, server.py, $PORT]
    replicas: 2
    route: {path: /}
    health: {type: http, path: /health, interval: 100ms}
    stop_timeout: 5s
  wrapped:
    run: python3 server.py ${PORT} slow-exit & wait
    route: {path: /wrapped}
    health: {type: http, path: /health, interval: 100ms}
    stop_timeout: 5s
environments:
  staging:
    listen: ${LISTEN}
    router: ${ROUTER}
"""


@pytest.fixture(params=["caddy", "haproxy"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    project = make_app(tmp_path, CONFIG, {"server.py": SERVER})
    project.env["ROUTER"] = request.param
    try:
        yield project
    finally:
        project.shutdown()
        _kill_session_of(project)


def _kill_session_of(project: Project) -> None:
    """Leave nothing running behind a test that killed supervisord."""
    for path in Path(project.home).rglob("*.pid"):
        try:
            session = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        for pid in _session_members(session):
            os.kill(pid, signal.SIGKILL)


def _session_members(session: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and int(entry.name) != session and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def platform(app: Project) -> tuple[int, dict[str, int]]:
    """supervisord's pid and the pids of its programs, read from the machine."""
    supervisor = Supervisor(Paths(app.home))
    pid = supervisor.supervisord_pid()
    assert pid is not None
    programs = {p.status.name: p.status.pid for p in supervisor.all_programs() if p.status.pid}
    return pid, {n: p for n, p in programs.items() if p is not None}


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := [p for p in pids if pid_alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def answers(url: str, n: int) -> Counter[str]:
    return Counter(get(url) for _ in range(n))


def test_killed_supervisord_leaves_nothing_serving_and_the_next_deploy_one_router(
    app: Project,
) -> None:
    first = app.run("build").stdout.split()
    app.run("deploy", "staging")
    listen = app.env["LISTEN"]
    url = f"http://{listen}/"
    v1 = get(url)
    assert v1 in " ".join(first)
    supervisord, programs = platform(app)
    router = f"conveyor-{app.env['ROUTER']}"
    wrapped = next(n for n in programs if n.startswith("staging-wrapped"))
    report = app.json("status", "staging")
    services = {s["name"]: s for s in report["environments"][0]["services"]}  # type: ignore[index]
    wrapped_port = int(services["wrapped"]["instances"][0]["port"])

    os.kill(supervisord, signal.SIGKILL)
    # Its direct children die with it: the router and the instances stop serving.
    direct = list(programs.values())
    assert wait_gone(direct, 10) == []
    # A grandchild (the server under the wrapper shell) may outlive it ...
    left = listening_pids(wrapped_port)
    assert left, "the wrapped server's own process should outlive its shell"

    (app.root / "server.py").write_text(SERVER + "# v2\n")
    app.commit("v2")
    deployed = app.run("deploy", "staging", "--build")
    # ... but the next start of supervisord stops it and says so.
    output = deployed.stdout + deployed.stderr
    assert f"supervisord (pid {supervisord}) had died" in output, output
    assert f"pid {left[0]}" in output and "server.py" in output, output
    assert wait_gone(left, 0) == []
    v2 = get(url)
    assert v2 != v1
    # One router on the address, the one supervisord runs, and only v2 answers.
    _, now = platform(app)
    holders = listening_pids(int(listen.rsplit(":", 1)[1]))
    assert holders and {os.getpgid(p) for p in holders} == {now[router]}
    assert answers(url, 50) == Counter({v2: 50})
    assert wrapped not in now or now[wrapped] != programs[wrapped]


def test_a_router_never_starts_next_to_another_program_on_its_address(app: Project) -> None:
    app.run("deploy", "staging", "--build")
    listen = app.env["LISTEN"]
    host, port = listen.rsplit(":", 1)
    supervisord, programs = platform(app)
    os.kill(supervisord, signal.SIGKILL)
    assert wait_gone(list(programs.values()), 10) == []
    with stray_listener(host, int(port)):
        refused = app.run("deploy", "staging", check=False)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr
        assert f"another program already listens on {listen}: pid {os.getpid()}" in (
            refused.stderr
        ), refused.stderr
        assert listening_pids(int(port)) == [os.getpid()]  # no router started beside it
    app.run("deploy", "staging")
    _, now = platform(app)
    holders = listening_pids(int(port))
    assert holders and {os.getpgid(p) for p in holders} == {now[f"conveyor-{app.env['ROUTER']}"]}


def test_status_names_a_listener_conveyor_does_not_run_and_down_waits_until_all_is_closed(
    app: Project,
) -> None:
    app.run("deploy", "staging", "--build")
    listen = app.env["LISTEN"]
    host, port = listen.rsplit(":", 1)
    report = app.json("status", "staging")["environments"][0]  # type: ignore[index]
    assert report["mismatches"] == []
    services = {s["name"]: s for s in report["services"]}
    wrapped_port = int(services["wrapped"]["instances"][0]["port"])
    [server] = listening_pids(wrapped_port)  # the server under the shell

    with stray_listener(host, int(port)):  # shares the router's address, as a second router
        report = app.json("status", "staging")["environments"][0]  # type: ignore[index]
        [mismatch] = report["mismatches"]
        assert mismatch.startswith(f"pid {os.getpid()} (") and f"listens on {listen}" in mismatch
        assert "is not Conveyor's router" in mismatch
        human = app.run("status", "staging").stdout
        assert f"mismatch: pid {os.getpid()}" in human

    done = app.run("down", "staging", "--yes")
    assert "staging is down" in done.stdout
    # Its instances were stopped and waited for, the server under the shell too.
    assert not pid_alive(server)
    assert listening_pids(int(port)) == []
    report = app.json("status", "staging")["environments"][0]  # type: ignore[index]
    assert report["mismatches"] == []

    app.run("deploy", "staging")
    with stray_listener(host, int(port)):
        refused = app.run("down", "staging", "--yes", check=False)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert f"{listen} still accepts connections (pid {os.getpid()}" in refused.stderr
        assert "staging is down" not in refused.stdout


@contextlib.contextmanager
def stray_listener(host: str, port: int) -> Iterator[None]:
    """A listener on the port that shares it as Caddy and HAProxy do (SO_REUSEPORT)."""
    with socket.socket() as stray:
        stray.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        stray.bind((host, port))
        stray.listen()
        yield


def test_a_killed_router_listens_again(app: Project) -> None:
    # How fast is bench/router_restart.py's to measure (0.12 s median with Caddy on a
    # quiet machine): a timed assertion here would only measure the machine's load.
    app.run("deploy", "staging", "--build")
    port = int(app.env["LISTEN"].rsplit(":", 1)[1])
    _, programs = platform(app)
    before = listening_inodes(port)
    os.kill(programs[f"conveyor-{app.env['ROUTER']}"], signal.SIGKILL)
    killed = time.monotonic()
    while not listening_inodes(port) - before and time.monotonic() - killed < 30:
        time.sleep(0.005)
    assert listening_inodes(port) - before, "the router did not come back"
    assert get(f"http://{app.env['LISTEN']}/")


def test_supervisord_killed_in_the_middle_of_a_rolling_deploy(app: Project, tmp_path: Path) -> None:
    """The issue's split brain: supervisord killed between a rolling deploy's first start
    and the rest. Whatever the deploy then decides (finish or roll back), what serves is
    what the store says, through one router, and `down` leaves the port closed."""
    app.run("deploy", "staging", "--build")
    listen = app.env["LISTEN"]
    url = f"http://{listen}/"
    v1 = get(url)
    (app.root / "server.py").write_text(SERVER + "# v2\n")
    app.commit("v2")
    app.run("build")
    plan = app.json("deploy", "staging", "--dry-run")
    assert isinstance(plan, dict)
    first_start = next(n for n, s in enumerate(plan["steps"], 1) if s["kind"] == "start")
    assert first_start < len(plan["steps"])
    supervisord, programs = platform(app)

    go_on = tmp_path / "go-on"
    failpoint = f"executor.after_step:{first_start}=wait:{go_on}"
    deploying = app.start("deploy", "staging", env={"CONVEYOR_FAILPOINTS": failpoint})
    assert deploying.stderr is not None
    for line in deploying.stderr:
        if line.startswith(f"failpoint executor.after_step:{first_start}: waiting"):
            break
    os.kill(supervisord, signal.SIGKILL)
    assert wait_gone(list(programs.values()), 10) == []
    go_on.touch()
    out, err = deploying.communicate(timeout=180)
    assert "Traceback" not in out + err, err
    assert deploying.returncode in (0, 1), err
    if deploying.returncode:  # the user is told why the step failed
        assert f"note: supervisord (pid {supervisord}) had died" in err, err

    history = app.json("history", "staging")
    assert isinstance(history, list)
    ended = history[0]["status"]
    assert ended in ("succeeded", "rolled_back"), (ended, err)
    # One router on the address: the one the new supervisord runs.
    _, now = platform(app)
    router = f"conveyor-{app.env['ROUTER']}"
    holders = listening_pids(int(listen.rsplit(":", 1)[1]))
    assert holders and {os.getpgid(p) for p in holders} == {now[router]}
    # Only the release the store says serves answers, and status sees nothing amiss.
    answered = answers(url, 40)
    assert len(answered) == 1, answered
    [serving] = answered
    assert (serving != v1) == (ended == "succeeded"), (serving, ended)
    report = app.json("status", "staging")["environments"][0]  # type: ignore[index]
    assert report["mismatches"] == []
    web = next(s for s in report["services"] if s["name"] == "web")
    assert web["release"] == serving
    serving_now = [i for i in web["instances"] if i["state"] == "serving"]
    assert {i["release"] for i in serving_now} == {serving}
    assert {i["process"] for i in serving_now} <= {"running", "starting"}
    # `down` means down: the address no longer answers.
    app.run("down", "staging", "--yes")
    host, port = listen.rsplit(":", 1)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()
