"""A small Celery project for the worker and singleton tests: a web service, a Celery
worker and a Celery beat, with the test's own `redis-server` as the broker.

- `tasks.py`: `record(n)` takes a little while, then counts its run of task n in Redis
  (`HINCRBY runs n 1`) and, on the first run only, marks n processed (`HSETNX
  processed n 1`) and notes which release ran it and when (`done_at`); beat sends `tick`
  every half second, which counts its beat's instance name (`ticks`, and `tick_log` with
  the time). A task lost is an n missing from `processed`.
- `enqueue.py N FIRST`: queues tasks FIRST..FIRST+N-1, 20 a second; `queued` is
  one past the last one queued.
- `app/version.txt` changes every service's release, `beat-version.txt` only beat's.
- Celery with its Redis transport comes from a wheelhouse (`pip download` once, kept in
  /tmp/conveyor-tests-celery): the release's build installs them with `--no-index`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.project import Project, free_port, git_project

CACHE = Path("/tmp/conveyor-tests-celery")
WHEELHOUSE = CACHE / "wheelhouse"
PACKAGES = ("celery[redis]",)  # Celery, kombu's Redis transport and what it needs

TASKS = """\
import os
import time

import redis
from celery import Celery

BROKER = os.environ["BROKER_URL"]
app = Celery("tasks", broker=BROKER)
app.conf.update(
    # Celery's default acknowledgement (when a task starts): a warm shutdown finishes the
    # running tasks and gives the reserved ones back. (Acknowledged late, every task
    # running as its worker stops would run again.)
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    beat_schedule={"tick": {"task": "tasks.tick", "schedule": 0.5}},
)
store = redis.Redis.from_url(BROKER)
RELEASE = os.environ.get("CONVEYOR_RELEASE", "")


@app.task
def record(n):
    # Idempotent, as a Celery task must be: Celery can run a task again around a
    # worker's warm shutdown (celery/celery#3796). Every run counts in `runs`; the
    # effect (`processed`) happens once.
    time.sleep(0.05)
    store.hincrby("runs", str(n), 1)
    if store.hsetnx("processed", str(n), 1):
        store.hset("release_of", str(n), RELEASE)
        store.hset("done_at", str(n), repr(time.time()))


@app.task
def tick(beat):
    store.hincrby("ticks", beat, 1)
    store.rpush("tick_log", f"{beat} {time.time()}")


@app.on_after_configure.connect
def _tick_with_my_name(sender, **kwargs):
    # Only beat runs its schedule: the instance in the ticks is the beat's.
    sender.conf.beat_schedule["tick"]["args"] = (os.environ.get("CONVEYOR_INSTANCE", ""),)
"""

ENQUEUE = """\
import sys
import time

from tasks import record, store

count, first = int(sys.argv[1]), int(sys.argv[2])
for n in range(first, first + count):
    record.delay(n)
    store.set("queued", n + 1)
    time.sleep(0.05)
"""

WEB = """\
import http.server
import os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "wheelhouse.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def wheelhouse() -> Path:
    """A directory with the wheels of Celery and redis-py and their dependencies."""
    with _locked():
        done = WHEELHOUSE / ".complete-celery-redis"
        if not done.exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "-d", str(WHEELHOUSE), *PACKAGES],
                check=True,
                capture_output=True,
                timeout=600,
            )
            done.touch()
    return WHEELHOUSE


def write_project(
    root: Path, broker: str, listen: str, fleet: dict[str, Any] | None = None
) -> None:
    """The project's files and conveyor.yml in `root` (a git repository is made by the
    caller); its environment `staging` listens on `listen`; `fleet`: the settings of a
    `fleet` environment beside it."""
    app = root / "app"
    app.mkdir(parents=True)
    (app / "tasks.py").write_text(TASKS)
    (app / "enqueue.py").write_text(ENQUEUE)
    (app / "web.py").write_text(WEB)
    (app / "requirements.txt").write_text("\n".join(PACKAGES) + "\n")
    (app / "version.txt").write_text("v1\n")
    (root / "beat-version.txt").write_text("v1\n")
    houses = str(wheelhouse())
    common = {
        "source": "app",
        "env": {"BROKER_URL": broker, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": houses},
        "dependencies": {
            "paths": [".venv"],
            "files": ["requirements.txt"],
            "install": [
                "python3 -m venv .venv",
                ".venv/bin/pip install -q -r requirements.txt",
            ],
        },
    }
    config = {
        "project": "celeryshop",
        "services": {
            "web": {  # the standard library's HTTP server: no virtualenv to install
                "source": "app",
                "exclude": ["requirements.txt"],
                "run": "python3 web.py",
                "deploy_timeout": "60s",
            },
            "worker": {
                **common,
                # exec: Celery itself is the program supervisord runs and signals, and its
                # output stays connected while its warm shutdown finishes the tasks.
                "run": "exec .venv/bin/celery -A tasks worker --concurrency 2 --loglevel INFO "
                "--without-mingle --without-gossip",
                "replicas": 2,
                "after": ["web"],
                "stop_timeout": "60s",
                "deploy_timeout": "60s",
            },
            "beat": {
                **common,
                "include": ["beat-version.txt"],  # a new beat release without a new worker
                "run": "exec .venv/bin/celery -A tasks beat --loglevel INFO "
                "--schedule $DATA_DIR/beat-schedule",
                "singleton": True,
                "after": ["web"],
                "deploy_timeout": "60s",
            },
        },
        "environments": {"staging": {"listen": listen}},
    }
    if fleet is not None:
        config["environments"]["fleet"] = fleet
    (root / "conveyor.yml").write_text(yaml.safe_dump(config, sort_keys=False))


@dataclass
class Redis:
    """A `redis-server` of the test's own, on its own port and directory."""

    port: int
    process: subprocess.Popen[bytes]
    bind: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://{self.bind}:{self.port}/0"

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-h", self.bind, "-p", str(self.port), "--raw", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout

    def hash(self, key: str) -> dict[str, str]:
        out = self.cli("HGETALL", key)
        if not out.strip():
            return {}  # redis-cli prints an empty line for an empty hash
        lines = out.removesuffix("\n").split("\n")
        return dict(zip(lines[::2], lines[1::2], strict=True))


@contextlib.contextmanager
def redis_server(directory: Path, port: int, bind: str = "127.0.0.1") -> Iterator[Redis]:
    """`redis-server` on `bind`:`port`, its files in `directory`; stopped at the end."""
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            bind,
            "--protected-mode",
            "no",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Redis(port, process, bind)
    deadline = time.monotonic() + 10
    while True:
        try:
            if server.cli("PING").strip() == "PONG":
                break
        except subprocess.CalledProcessError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"redis-server on port {port} did not start")
        time.sleep(0.05)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def beat_processes(home: Path) -> list[int]:
    """Pids of the processes that run a Celery beat from a release under `home`, found in
    /proc (whatever supervisord thinks)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
            started = _started(int(entry.name))
        except OSError:
            continue
        celery = any(a.endswith(b"celery") for a in argv[:3])
        if celery and b"beat" in argv and cwd.startswith(str(home)):
            found.append((int(entry.name), started))
    # Only those still running once the scan is over. A scan takes a while on a loaded
    # machine: it can read an old beat that exits a moment later, then the new one that
    # starts after it (a higher pid, read later), and would count two beats at once.
    # "Still running" means the same process: the suite starts so many that pids wrap
    # around (pid_max 32768) and an old beat's pid is soon another process's.
    return [pid for pid, started in found if _running(pid, started)]


def _started(pid: int) -> int:
    """When the process started (clock ticks after boot, /proc/PID/stat field 22)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


def _running(pid: int, started: int) -> bool:
    """Whether the process `pid` that started at `started` is alive and not a zombie
    (whose cmdline reads empty)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes()) and _started(pid) == started
    except (OSError, ValueError, IndexError):
        return False


@contextlib.contextmanager
def deployed(tmp: Path, timeout: float = 300) -> Iterator[tuple[Project, Redis]]:
    """The project in `tmp/project` deployed to staging (v1), with its own broker in
    `tmp/redis`; everything it started is stopped afterwards."""
    with redis_server(tmp / "redis", free_port()) as redis:
        root = tmp / "project"
        root.mkdir()
        write_project(root, redis.url, f"127.0.0.1:{free_port()}")
        project = git_project(root, tmp / "home")
        try:
            project.run("deploy", "staging", "--build", timeout=timeout)
            yield project, redis
        finally:
            project.shutdown()
