"""End to end: a Celery worker and a Celery beat deployed by Conveyor on this machine,
with real supervisord, Caddy and the test's own `redis-server` as the broker.

- A worker has no port and no route, `status --json` says `worker`; it rolls while
  tasks are being queued and every task is processed (none lost when a worker is
  replaced: Celery's warm shutdown on SIGTERM, tasks acknowledged when they start).
- Beat is a singleton: sampled every 50 ms from supervisord and from /proc through a
  deploy, a rollback, and a `kill -9` of the CLI between the old beat's stop and the
  new one's start followed by `conveyor resume`, never two beats run at once.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.celery_app import Redis, beat_processes, deployed
from tests.support.project import Project

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def celery_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Redis]]:
    """The Celery project deployed to staging (v1), with its broker."""
    with deployed(tmp_path_factory.mktemp("celery")) as (project, redis):
        yield project, redis


def new_version(project: Project, version: str, file: str = "app/version.txt") -> None:
    (project.root / file).write_text(version + "\n")
    project.commit(version)


def enqueue(project: Project, redis: Redis, count: int) -> subprocess.Popen[bytes]:
    """`enqueue.py` of the worker's current release, with its interpreter, in the background."""
    releases = project.json("releases", "worker")
    assert isinstance(releases, list)
    current = services(project)["worker"]["release"]
    path = Path(next(r["path"] for r in releases if r["id"] == current))
    return subprocess.Popen(
        [str(path / ".venv" / "bin" / "python"), "enqueue.py", str(count), "0"],
        cwd=path,
        env={"BROKER_URL": redis.url, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def services(project: Project, environment: str = "staging") -> dict[str, Any]:
    """`status ENV --json`'s services, by name."""
    report = project.json("status", environment)
    assert isinstance(report, dict)
    return {s["name"]: s for s in report["environments"][0]["services"]}


def wait_for(what: str, condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class BeatSampler:
    """Counts the running beats every 50 ms, from supervisord and from /proc, in a thread."""

    def __init__(self, project: Project) -> None:
        from conveyor.paths import Paths
        from conveyor.targets.supervisor import Supervisor

        self.home = project.home
        self.supervisor = Supervisor(Paths(project.home))
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                programs = self.supervisor.all_programs(owner="instance")
                supervised = sum(
                    1
                    for p in programs
                    if "-beat-" in p.status.name and p.status.state in ("starting", "running")
                )
            except Exception:
                supervised = 0  # supervisord busy reloading: /proc still counts
            self.most = max(self.most, supervised, len(beat_processes(self.home)))
            self.samples += 1
            self._stop.wait(0.05)

    def __enter__(self) -> BeatSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_a_worker_rolls_and_no_task_is_lost(celery_project: tuple[Project, Redis]) -> None:
    project, redis = celery_project
    before = services(project)
    assert [before[n]["kind"] for n in ("web", "worker", "beat")] == ["web", "worker", "singleton"]
    workers = before["worker"]["instances"]
    assert len(workers) == 2 and all(i["port"] == 0 and i["address"] == "" for i in workers)
    assert before["worker"]["healthy"] == 2
    table = project.run("status", "staging").stdout
    assert "worker (worker)" in table and "beat (singleton)" in table
    assert "services web, worker (worker), beat (singleton);" in project.run("validate").stdout

    redis.cli("DEL", "processed", "runs", "release_of", "queued")
    new_version(project, "v2")
    project.run("build")
    plan = project.run("deploy", "staging", "--dry-run").stdout
    assert "order: web (web, rolling) -> worker (worker, rolling) -> beat (singleton, " in plan
    # 20 tasks a second (each takes 50 ms) from before the deploy until after it.
    queueing = enqueue(project, redis, 100_000)
    wait_for("tasks processed", lambda: len(redis.hash("processed")) >= 20)
    project.run("deploy", "staging", timeout=300)
    time.sleep(1)
    queueing.terminate()
    assert queueing.wait(10) == -15, queueing.stderr.read() if queueing.stderr else ""
    queued = int(redis.cli("GET", "queued"))
    assert queued > 100
    wait_for(f"{queued} tasks processed", lambda: len(redis.hash("processed")) >= queued, 120)
    processed = redis.hash("processed")
    # None lost (the one being queued when the script was ended may be there too). A
    # task Celery ran twice is in `runs` with 2: the task's own guard kept its effect once.
    assert set(range(queued)) <= {int(n) for n in processed} <= set(range(queued + 1))
    after = services(project)
    releases = set(redis.hash("release_of").values())
    assert releases == {before["worker"]["release"], after["worker"]["release"]}  # both ran some
    assert all(i["release"] == after["worker"]["release"] for i in after["worker"]["instances"])


def test_beat_never_runs_twice(celery_project: tuple[Project, Redis]) -> None:
    project, redis = celery_project
    with BeatSampler(project) as sampler:
        new_version(project, "v3", "beat-version.txt")  # beat changes alone
        project.run("deploy", "staging", "--build", timeout=300)
        project.run("rollback", "staging", timeout=300)

        # kill -9 of the CLI right after the old beat stopped, then resume.
        new_version(project, "v4", "beat-version.txt")
        project.run("build")
        plan = project.json("deploy", "staging", "--dry-run")
        assert isinstance(plan, dict)
        stop_beat = next(
            s["index"] for s in plan["steps"] if s["service"] == "beat" and s["kind"] == "stop"
        )
        crashed = project.run(
            "deploy",
            "staging",
            check=False,
            timeout=300,
            env={"CONVEYOR_FAILPOINTS": f"executor.after_step:{stop_beat}=crash"},
        )
        assert crashed.returncode == -9
        assert beat_processes(project.home) == []  # the old one is gone, no new one yet
        project.run("resume", "staging", timeout=300)
        wait_for("the new beat", lambda: len(beat_processes(project.home)) == 1)
        redis.cli("DEL", "ticks")
        wait_for("beat's ticks", lambda: sum(map(int, redis.hash("ticks").values())) >= 2)
    assert sampler.samples > 100
    assert sampler.most == 1
    beat = services(project)["beat"]
    assert beat["kind"] == "singleton" and len(beat["instances"]) == 1
    assert list(redis.hash("ticks")) == [beat["instances"][0]["name"]]


def test_a_worker_that_crashes_at_boot_fails_the_deploy(
    celery_project: tuple[Project, Redis],
) -> None:
    project, _ = celery_project
    before = services(project)["worker"]
    # Up for 1.5 s: supervisord counts it started (startsecs 1), then it exits.
    project.configure_service(
        "worker", run="exec .venv/bin/python -c 'import time; time.sleep(1.5)'"
    )
    new_version(project, "crashing")
    failed = project.run("deploy", "staging", "--build", check=False, timeout=300)
    assert failed.returncode != 0
    assert "is not healthy" in failed.stderr and "min_ready" in failed.stderr, failed.stderr
    after = services(project)["worker"]
    assert after["release"] == before["release"]  # rolled back: the old workers kept working
    assert [i["name"] for i in after["instances"]] == [i["name"] for i in before["instances"]]
    assert all(i["process"] == "running" for i in after["instances"])
