"""End to end: examples/erp on two SSH test hosts (`scripts/testhosts`), as it is but for
one environment more, `fleet`, which the test adds to its conveyor.yml: the web service
and the Celery workers spread over both hosts behind the router of this machine, beat
(a singleton) on one of them, Redis as an accessory on host2, migrations on host1, and
PostgreSQL a server of the test's own on the hosts' bridge (the machine's own listens on
127.0.0.1 only). The fleet's secrets are set with `conveyor secrets set` into
`secrets/fleet.age`, with the example's test key.

Under HTTP load (GETs of /health/, and POSTs of /orders/ whose orders are Celery tasks):
a deploy of a release with a migration (verified backup on this machine, `migrate` on
host1, web canary over both hosts, workers rolled on both hosts, beat stop-first, the
bake), then a rollback. Checked: no failed request; every order processed once (none
lost, none whose effect happened twice); never two beats on the hosts together (/proc,
every 50 ms); no secret value in any output or any file Conveyor wrote here or on the
hosts, but the instances' program files.
"""

from __future__ import annotations

import itertools
import json
import pwd
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.loadgen import Load
from tests.e2e.test_erp import MIGRATION, orders
from tests.e2e.test_workers import services, wait_for
from tests.support import generators
from tests.support.celery_app import beat_processes
from tests.support.planted import Recorder, forms
from tests.support.postgres import private_server
from tests.support.project import CONVEYOR, EXAMPLES, Project, free_port, make_project
from tests.support.testhosts import Inventory, host_set, hosts_up

pytestmark = pytest.mark.e2e

ENV = "fleet"
VALUES = {
    "SECRET_KEY": "erp-fleet-TEST-secret-key-5b1e0c9d7a",
    "EMAIL_HOST_PASSWORD": "erp-fleet-TEST-mail-3f8a2c",
}


def fleet_environment(hosts: Inventory, listen: str, database: str, redis_port: int) -> str:
    """The `fleet` environment, as YAML to go under `environments:`."""
    return f"""
  fleet:                          # added by tests/e2e/test_fleet_erp.py
    listen: {listen}
    target: ssh
    hosts: {{inventory: "{hosts.path}"}}
    run_host: host1
    accessories: {{redis: {{port: "{redis_port}", host: host2}}}}
    databases:
      main: {{url: "{database}"}}
    env:
      DATABASE_URL: "{database}"
    strategy:
      type: canary
      steps:
        - set_weight: 50
        - pause: 2s
      rollback_window: 10m
    verify:
      bake: 3s
      interval: 1s
      smoke:
        - {{name: health, path: /health/}}
        - {{name: order stats, path: /orders/stats/}}
    secrets:
      SECRET_KEY: encrypted
      EMAIL_HOST_PASSWORD: encrypted
"""


def set_secret(project: Project, cli: Recorder, name: str, value: str) -> None:
    done = subprocess.run(
        [*CONVEYOR, "secrets", "set", ENV, name],
        cwd=project.root,
        env=project.env,
        input=value,
        capture_output=True,
        text=True,
        timeout=60,
    )
    cli.keep(done, "secrets", "set")
    assert done.returncode == 0, done.stderr


def host_homes(hosts: Inventory) -> list[Path]:
    """Each test host's home directory: its files (hosts share this machine's)."""
    return [Path(pwd.getpwnam(h["user"]).pw_dir) for h in hosts.hosts]


class FleetBeats:
    """The most Celery beats running at once on the hosts, from /proc every 50 ms (the
    hosts are network namespaces of this machine: their processes are in its /proc)."""

    def __init__(self, homes: list[Path]) -> None:
        self.homes = homes
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> int:
        return sum(len(beat_processes(home)) for home in self.homes)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, self.count())
            self.samples += 1
            self._stop.wait(0.05)

    def __enter__(self) -> FleetBeats:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Fleet:
    project: Project
    cli: Recorder
    db: Any
    hosts: Inventory
    url: str


@pytest.fixture(scope="module")
def erp_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The example deployed to `fleet` (v1) on two test hosts, with its database."""
    psycopg = pytest.importorskip("psycopg")
    tmp = tmp_path_factory.mktemp("erp-fleet")
    house = generators.requirements_wheelhouse(EXAMPLES / "erp" / "requirements.txt")
    bridge = f"10.77.{host_set()}.1"
    with (
        hosts_up(2, tmp / "hosts") as hosts,
        private_server(bridge, free_port()) as server,
    ):
        admin = psycopg.connect(server, autocommit=True)
        admin.execute("CREATE DATABASE erp")
        admin.close()
        database = server.rsplit("/", 1)[0] + "/erp"
        db = psycopg.connect(database, autocommit=True)
        project = make_project(tmp, "erp")
        listen = f"127.0.0.1:{free_port()}"
        config = project.root / "conveyor.yml"
        fleet = fleet_environment(hosts, listen, database, free_port())
        config.write_text(config.read_text().replace("\nanalysis:\n", fleet + "\nanalysis:\n", 1))
        project.env.update(
            ERP_STAGING_LISTEN=f"127.0.0.1:{free_port()}",
            CONVEYOR_AGE_KEY_FILE=str(project.root / "test-age-key.txt"),
            XDG_CONFIG_HOME=str(tmp / "config"),
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(house),
        )
        project.env.pop("CONVEYOR_AGE_KEY", None)
        cli = Recorder(project)
        try:
            for name, value in VALUES.items():
                set_secret(project, cli, name, value)
            project.commit("the fleet environment and its secrets")
            cli("hosts", "trust", ENV, "--yes")
            cli("setup", ENV, timeout=300)
            cli("deploy", ENV, "--build", timeout=900)
            yield Fleet(project, cli, db, hosts, f"http://{listen}")
        finally:
            project.run("down", ENV, "--yes", check=False, timeout=300)
            project.run("accessory", "stop", ENV, "redis", check=False, timeout=120)
            project.shutdown()
            db.close()


def test_the_erp_process_on_two_hosts_under_load(erp_fleet: Fleet) -> None:
    project, cli, db = erp_fleet.project, erp_fleet.cli, erp_fleet.db
    v1 = services(project, ENV)
    assert {n: s["kind"] for n, s in v1.items()} == {
        "web": "web",
        "worker": "worker",
        "beat": "singleton",
    }
    assert sorted(i["host"] for i in v1["web"]["instances"]) == ["host1", "host2"]
    assert sorted(i["host"] for i in v1["worker"]["instances"]) == ["host1", "host2"]
    assert len(v1["beat"]["instances"]) == 1
    homes = host_homes(erp_fleet.hosts)

    # v2: a nullable column (a migration the running release survives) in every service.
    (project.root / "orders" / "migrations" / "0002_order_note.py").write_text(MIGRATION)
    models = project.root / "orders" / "models.py"
    models.write_text(
        models.read_text().replace(
            "    times_processed = models.PositiveIntegerField(default=0)\n",
            "    times_processed = models.PositiveIntegerField(default=0)\n"
            "    note = models.TextField(null=True, blank=True)\n",
        )
    )
    project.commit("v2: orders get a note")
    cli("build", timeout=600)

    numbers = itertools.count()

    def order() -> bytes:
        return json.dumps({"reference": f"load-{next(numbers)}", "work_seconds": 0.05}).encode()

    url = erp_fleet.url
    with (
        FleetBeats(homes) as beats,
        Load(f"{url}/health/", clients=2, rate=30) as reads,
        Load(f"{url}/orders/", clients=2, rate=20, post=order) as posts,
    ):
        wait_for("orders processed", lambda: orders(db).get(1, 0) >= 20)

        deployed = cli("deploy", ENV, timeout=900)
        out = deployed.stdout + deployed.stderr
        assert "verif" in out and "migrat" in out, out  # the backup, verified, then migrate
        after = services(project, ENV)
        assert {n: s["release"] != v1[n]["release"] for n, s in after.items()} == {
            "web": True,
            "worker": True,
            "beat": True,
        }
        assert sorted(i["host"] for i in after["worker"]["instances"]) == ["host1", "host2"]
        columns = db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders_order'"
        ).fetchall()
        assert ("note",) in columns  # migrated on host1, against the fleet's database

        cli("rollback", ENV, timeout=900)
        wait_for("beat back on v1", lambda: beats.count() == 1)
        time.sleep(1)  # orders posted after the rollback, too
    read, posted = reads.stop(), posts.stop()

    assert read.failures == 0, read.summary()
    assert read.requests > 100, read.summary()
    assert posted.failures == 0, posted.summary()
    created = posted.statuses[201] + posted.statuses[200]
    assert set(posted.statuses) <= {200, 201}, posted.summary()
    assert created > 100, posted.summary()

    # Every order was processed once, by the workers on the hosts: none lost, none whose
    # effect happened twice (the example's task skips an order Celery delivers again).
    wait_for(f"{created} orders processed", lambda: orders(db).get(0, 0) == 0, 120)
    time.sleep(1)  # anything processed twice would show by now
    assert orders(db) == {1: created}

    # Never two beats on the hosts together; one runs now, on v1.
    assert beats.samples > 100
    assert beats.most == 1
    now = services(project, ENV)
    assert [i["release"] for i in now["beat"]["instances"]] == [v1["beat"]["release"]]

    # No secret value anywhere: the outputs, this machine's files, the hosts' files, but
    # the instances' program files (0600) on the hosts.
    for args in (
        ("status", ENV, "--json"),
        ("history", ENV, "--json"),
        ("logs", ENV, "web"),
        ("logs", ENV, "worker"),
        ("secrets", "list", ENV, "--json"),
    ):
        cli(*args, check=False)
    planted = forms(VALUES.values())
    for output in cli.outputs:
        for value in planted:
            assert value not in output, f"{value!r} in the output of {output[:200]}"
    holders = []
    for root in (project.home, project.root, Path(project.env["XDG_CONFIG_HOME"]), *homes):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                content = path.read_bytes()
                if any(value.encode() in content for value in planted):
                    holders.append(path)
    assert holders, "the instances' program files hold their environment"
    for path in holders:
        assert path.parent.name == "programs" and path.parent.parent.name == "supervisor", path
        assert any(path.is_relative_to(home) for home in homes), path
        assert path.stat().st_mode & 0o777 == 0o600, path
        assert path.parent.stat().st_mode & 0o777 == 0o700, path
