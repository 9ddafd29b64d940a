"""End to end: examples/erp (Django + a Celery worker + Celery beat + a Redis accessory +
PostgreSQL), copied as it is and deployed to staging on this machine by its own
conveyor.yml, with the secrets of its encrypted files and its published test key.

One pass, under HTTP load the whole time (GETs of /health/, and POSTs of /orders/ whose
orders are Celery tasks, 20 a second): a deploy of a release with a migration (verified
backup, migrate, web canary, worker roll, beat stop-first, the bake after traffic), a
rollback, and beat's new release deployed again alone, its CLI killed (-9) between the
old beat's stop and the new one's start, then resumed. Checked: no failed request; every order queued was processed
once (none lost when a worker was replaced, none whose effect happened twice); never two beats
(supervisord and /proc sampled every 50 ms); no secret value in any output or any file
Conveyor wrote but the instances' 0600 program files.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.loadgen import Load
from tests.e2e.test_workers import BeatSampler, services, wait_for
from tests.support import generators
from tests.support.celery_app import beat_processes
from tests.support.planted import Recorder, assert_nowhere_but_programs
from tests.support.postgres import scratch_database
from tests.support.project import EXAMPLES, Project, free_port, make_project

pytestmark = pytest.mark.e2e

MIGRATION = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial")]
    operations = [
        migrations.AddField(
            model_name="order", name="note", field=models.TextField(null=True, blank=True)
        ),
    ]
"""


def planted_values(root: Path) -> tuple[dict[str, str], str]:
    """The values in the example's secrets/staging.age, and the test key that opens it."""
    from pyrage.x25519 import Identity

    from conveyor.secrets import vault

    text = (root / "test-age-key.txt").read_text()
    key = next(line for line in text.splitlines() if line.startswith("AGE-SECRET-KEY-"))
    return vault.read(root, "staging", Identity.from_str(key)), key


@pytest.fixture(scope="module")
def erp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Recorder, Any]]:
    """The example deployed to staging (v1), with its PostgreSQL database."""
    tmp = tmp_path_factory.mktemp("erp")
    house = generators.requirements_wheelhouse(EXAMPLES / "erp" / "requirements.txt")
    with scratch_database("erp") as (url, db):
        project = make_project(tmp, "erp")
        project.env.update(
            ERP_DATABASE_URL=url,
            ERP_STAGING_LISTEN=f"127.0.0.1:{free_port()}",
            ERP_STAGING_REDIS_PORT=str(free_port()),
            ERP_STAGING_BAKE="3s",
            CONVEYOR_AGE_KEY_FILE=str(project.root / "test-age-key.txt"),
            XDG_CONFIG_HOME=str(tmp / "config"),
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(house),
        )
        project.env.pop("CONVEYOR_AGE_KEY", None)
        cli = Recorder(project)
        try:
            cli("deploy", "staging", "--build", timeout=600)
            yield project, cli, db
        finally:
            project.shutdown()


def orders(db: Any) -> dict[int, int]:
    """How many orders were processed how many times."""
    rows = db.execute(
        "SELECT times_processed, count(*) FROM orders_order GROUP BY times_processed"
    ).fetchall()
    return {int(times): int(count) for times, count in rows}


def test_the_erp_process_under_load(erp: tuple[Project, Recorder, Any]) -> None:
    project, cli, db = erp
    values, key = planted_values(project.root)
    assert set(values) == {"SECRET_KEY", "EMAIL_HOST_PASSWORD"}
    v1 = services(project)
    assert {n: s["kind"] for n, s in v1.items()} == {
        "web": "web",
        "worker": "worker",
        "beat": "singleton",
    }
    url = f"http://{project.env['ERP_STAGING_LISTEN']}"

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
    plan = cli("deploy", "staging", "--dry-run").stdout
    assert "order: web (web, canary) -> worker (worker, rolling) -> beat (singleton, " in plan

    numbers = itertools.count()

    def order() -> bytes:
        return json.dumps({"reference": f"load-{next(numbers)}", "work_seconds": 0.05}).encode()

    with (
        BeatSampler(project) as beats,
        Load(f"{url}/health/", clients=2, rate=30) as reads,
        Load(f"{url}/orders/", clients=2, rate=20, post=order) as posts,
    ):
        wait_for("orders processed", lambda: orders(db).get(1, 0) >= 20)

        deployed = cli("deploy", "staging", timeout=600)
        out = deployed.stdout + deployed.stderr
        assert "verif" in out and "migrat" in out, out  # the backup, verified, then migrate
        # a real deploy: the beat was replaced, the worker rolled, all on the new release
        after = services(project)
        # (Releases are named by build second and source: services built in the same
        # second from the same tree share a name, so only "not v1's" is asserted.)
        assert {n: s["release"] != v1[n]["release"] for n, s in after.items()} == {
            "web": True,
            "worker": True,
            "beat": True,
        }
        assert after["worker"]["healthy"] == 2

        cli("rollback", "staging", timeout=600)

        # Beat's v2 again (web and worker stay), its CLI killed right after the old beat
        # stopped, then resumed.
        releases = [f"{n}={v1[n]['release']}" for n in ("web", "worker")]
        only_beat = ["-r", releases[0], "-r", releases[1], "-r", f"beat={after['beat']['release']}"]
        again = project.json("deploy", "staging", *only_beat, "--dry-run")
        assert isinstance(again, dict)
        assert {s["service"] for s in again["steps"] if s["kind"] == "start"} == {"beat"}
        stop_beat = next(
            s["index"] for s in again["steps"] if s["service"] == "beat" and s["kind"] == "stop"
        )
        crashed = project.run(
            "deploy",
            "staging",
            *only_beat,
            check=False,
            timeout=600,
            env={"CONVEYOR_FAILPOINTS": f"executor.after_step:{stop_beat}=crash"},
        )
        cli.keep(crashed, "deploy", "staging")
        assert crashed.returncode == -9, crashed.stderr
        assert beat_processes(project.home) == []  # the old one is gone, no new one yet
        cli("resume", "staging", timeout=600)
        wait_for("the new beat", lambda: len(beat_processes(project.home)) == 1)
        beats_before = db.execute("SELECT count(*) FROM orders_heartbeat").fetchone()[0]
        wait_for(
            "the new beat's heartbeats",
            lambda: (
                db.execute("SELECT count(*) FROM orders_heartbeat").fetchone()[0]
                >= beats_before + 2
            ),
        )
        time.sleep(1)  # orders posted after the last deploy, too
    read, posted = reads.stop(), posts.stop()

    assert read.failures == 0, read.summary()
    assert read.requests > 100, read.summary()
    assert posted.failures == 0, posted.summary()
    # A POST whose connection closed unanswered (Caddy closes connections as it reloads)
    # is sent again: 200 when the first one had created the order, 201 when not.
    created = posted.statuses[201] + posted.statuses[200]
    assert set(posted.statuses) <= {200, 201}, posted.summary()
    assert created > 200, posted.summary()  # 20 a second through three deploys

    # Every order was processed, once: none lost when a worker was replaced, and none whose
    # effect happened twice (the example's task skips an order Celery delivers again).
    wait_for(f"{created} orders processed", lambda: orders(db).get(0, 0) == 0, 120)
    time.sleep(1)  # anything processed twice would show by now
    assert orders(db) == {1: created}

    # Never two beats; one runs now, on the release the deploy left.
    assert beats.samples > 100
    assert beats.most == 1
    now = services(project)
    assert [i["release"] for i in now["beat"]["instances"]] == [after["beat"]["release"]]
    assert {i["release"] for i in now["worker"]["instances"]} == {v1["worker"]["release"]}

    # No secret anywhere Conveyor writes (the state DB, journal, logs, backups, releases).
    for args in (
        ("status", "staging"),
        ("status", "staging", "--json"),
        ("history", "staging", "--json"),
        ("logs", "staging", "web"),
        ("logs", "staging", "worker"),
        ("secrets", "list", "staging", "--json"),
    ):
        cli(*args, check=False)
    for record in project.json("history", "staging")[:3]:  # type: ignore[index]
        cli("explain", str(record["id"]), "--json", check=False)
    roots = [Path(project.env["XDG_CONFIG_HOME"])]
    assert_nowhere_but_programs(project, values.values(), cli.outputs, roots)
    for path in project.home.rglob("*"):  # the test key never went into a release or log
        if path.is_file() and not path.is_symlink():
            assert key.encode() not in path.read_bytes(), path
