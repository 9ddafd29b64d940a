"""End to end: a Celery worker and a Celery beat on two SSH test hosts
(`scripts/testhosts`), the broker a `redis-server` of the test's own on the hosts' bridge.

The workers are spread over both hosts, listen on nothing and consume the tasks the
deployer queues (each exactly once); beat, a singleton, runs on exactly one host, and
when it is replaced the old beat's last tick comes before the new beat's first one,
whichever host each runs on.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_workers import services, wait_for
from tests.support.celery_app import Redis, redis_server, write_project
from tests.support.project import Project, free_port, git_project
from tests.support.testhosts import Inventory, host_set, hosts_up

pytestmark = pytest.mark.e2e

ENV = "fleet"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Redis, Inventory]]:
    tmp = tmp_path_factory.mktemp("fleet-celery")
    with (
        hosts_up(2, tmp / "hosts") as hosts,
        redis_server(tmp / "redis", free_port(), bind=f"10.77.{host_set()}.1") as redis,
    ):
        root = tmp / "project"
        root.mkdir()
        settings = {
            "listen": f"127.0.0.1:{free_port()}",
            "target": "ssh",
            "hosts": {"inventory": str(hosts.path)},
        }
        write_project(root, redis.url, f"127.0.0.1:{free_port()}", fleet=settings)
        project = git_project(root, tmp / "home")
        try:
            project.run("hosts", "trust", ENV, "--yes")
            project.run("setup", ENV, timeout=300)
            project.run("deploy", ENV, "--build", timeout=600)
            yield project, redis, hosts
        finally:
            project.run("down", ENV, "--yes", check=False, timeout=300)
            project.shutdown()


def fleet_services(project: Project) -> dict[str, Any]:
    return services(project, ENV)


def tick_log(redis: Redis) -> list[tuple[str, float]]:
    lines = redis.cli("LRANGE", "tick_log", "0", "-1").splitlines()
    return [(name, float(at)) for name, at in (line.split() for line in lines if line)]


def test_workers_on_both_hosts_and_one_beat(fleet: tuple[Project, Redis, Inventory]) -> None:
    project, redis, _ = fleet
    found = fleet_services(project)
    workers, beats = found["worker"]["instances"], found["beat"]["instances"]
    assert found["worker"]["kind"] == "worker" and found["beat"]["kind"] == "singleton"
    assert sorted(i["host"] for i in workers) == ["host1", "host2"]
    assert all(i["port"] == 0 and i["process"] == "running" for i in workers)
    assert len(beats) == 1 and beats[0]["process"] == "running"

    # Tasks queued here are consumed on the hosts, each once.
    releases = project.json("releases", "worker")
    assert isinstance(releases, list)
    path = Path(next(r["path"] for r in releases if r["id"] == found["worker"]["release"]))
    subprocess.run(
        [str(path / ".venv" / "bin" / "python"), "enqueue.py", "60", "0"],
        cwd=path,
        env={"BROKER_URL": redis.url, "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    )
    wait_for("60 tasks processed", lambda: len(redis.hash("processed")) >= 60)
    assert set(redis.hash("runs").values()) == {"1"}  # each task ran once, on one host

    # Beat replaced: the old one's ticks all come before the new one's, on any host.
    old = beats[0]["name"]
    redis.cli("DEL", "tick_log")
    wait_for("a tick of the old beat", lambda: bool(tick_log(redis)))
    (project.root / "beat-version.txt").write_text("v2\n")
    project.commit("beat v2")
    project.run("deploy", ENV, "--build", timeout=600)
    new = fleet_services(project)["beat"]["instances"]
    assert len(new) == 1 and new[0]["name"] != old
    wait_for("a tick of the new beat", lambda: new[0]["name"] in dict(tick_log(redis)))
    log = tick_log(redis)
    assert {name for name, _ in log} == {old, new[0]["name"]}
    last_old = max(at for name, at in log if name == old)
    first_new = min(at for name, at in log if name == new[0]["name"])
    assert last_old < first_new
