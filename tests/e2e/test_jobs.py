"""End to end: scheduled jobs run by `conveyor agent` under the real supervisord.

The shop is deployed to staging with jobs that run every second or two: one that
succeeds (and prints a secret), one that fails (and notifies a real HTTP receiver),
one slower than its interval (its overlapping runs are skipped), and a backup of a
real PostgreSQL database with `keep: 2`. Then a deploy with a changed config restarts
the agent with the new jobs, and `conveyor down` stops it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import yaml

from tests.support.postgres import scratch_database
from tests.support.project import Project, make_project
from tests.support.receiver import Receiver, receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

SECRET = "job-secret-5d8e1f2a9b"  # a secret of staging, from the deployer's shell only
T = TypeVar("T")


def edit(project: Project, change: Callable[[dict[str, Any]], None], message: str) -> None:
    path = project.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit(message)


JOBS = {
    "tick": {
        "schedule": "* * * * * *",  # every second (six fields: seconds first)
        "service": "api",
        "command": 'echo "tick $CONVEYOR_RELEASE token=$JOB_TOKEN"; date +%s >> "$DATA_DIR/ticks"',
    },
    "fails": {"every": "2s", "service": "api", "command": "echo about to fail; exit 3"},
    "slow": {"schedule": "* * * * * *", "service": "api", "command": "sleep 2.5"},
    "hangs": {
        "every": "2s",
        "service": "api",
        "command": "echo waiting; sleep 60",
        "timeout": "1s",
        "environments": ["staging"],
    },
    "backup-main": {"schedule": "*/2 * * * * *", "backup": "main", "keep": 2},
    "by-hand": {  # at 03:00 on January 1st: run by hand in the tests
        "schedule": "0 3 1 1 *",
        "service": "api",
        "command": "echo about to fail; sleep 8; exit 3",
    },
    "elsewhere": {
        "schedule": "* * * * * *",
        "service": "api",
        "command": "true",
        "environments": ["production"],
    },
}


@pytest.fixture(scope="module")
def http() -> Iterator[Receiver]:
    with receiver() as server:
        yield server


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, http: Receiver) -> Iterator[Project]:
    with scratch_database("jobs") as (url, conn):
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, total int)")
        conn.execute("INSERT INTO orders (total) SELECT g FROM generate_series(1, 50) g")
        project = make_project(tmp_path_factory.mktemp("jobs"))
        project.env.update({"SHOP_DB_URL": url, "SHOP_JOB_TOKEN": SECRET})

        def configure(config: dict[str, Any]) -> None:
            config["databases"] = {"main": {"url": "${SHOP_DB_URL}"}}
            config["notify"] = [{"webhook": {"url": f"{http.base}/jobs"}, "events": ["job_failed"]}]
            config["environments"]["staging"]["secrets"] = {"JOB_TOKEN": {"env": "SHOP_JOB_TOKEN"}}
            config["jobs"] = JOBS

        edit(project, configure, "jobs")
        try:
            project.run("deploy", "staging", "--build")
            yield project
        finally:
            project.shutdown()


def report(shop: Project) -> dict[str, Any]:
    data: Any = shop.json("jobs", "staging")
    return data  # type: ignore[no-any-return]


def runs(shop: Project, job: str) -> list[dict[str, Any]]:
    """Every run of `job` in staging, oldest first, read from the state database."""
    import sqlite3

    # Closed at once: a connection left for the garbage collector keeps its stale view
    # of the WAL once another process has checkpointed and removed it.
    with contextlib.closing(sqlite3.connect(shop.home / "state.db")) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "select * from job_runs where environment = 'staging' and job = ? order by id", (job,)
        ).fetchall()
    return [dict(row) for row in rows]


def test_the_agent_runs_jobs_and_records_their_exit_codes(shop: Project) -> None:
    done = wait_for(
        "3 runs of tick and 2 of fails",
        lambda: (
            len([r for r in runs(shop, "tick") if r["status"] == "succeeded"]) >= 3
            and len([r for r in runs(shop, "fails") if r["status"] == "failed"]) >= 2
        ),
    )
    assert done
    ticks = [r for r in runs(shop, "tick") if r["status"] == "succeeded"]
    status: Any = shop.json("status", "staging")
    (staging,) = status["environments"]
    release = next(s["release"] for s in staging["services"] if s["name"] == "api")
    assert all(r["exit_code"] == 0 and r["release_id"] == release for r in ticks)
    assert all(r["trigger"] == "schedule" and r["host"] == "local" for r in ticks)
    # The command ran in the release, with the service's variables and its secret...
    assert f"tick {release} token=***" in ticks[-1]["output"]
    data_dir = shop.home / "data" / "staging" / "api"
    assert len((data_dir / "ticks").read_text().split()) >= 3
    # ...which is masked in what Conveyor keeps: the store and the job's log.
    assert SECRET.encode() not in (shop.home / "state.db").read_bytes()
    log = shop.home / "logs" / "jobs" / "staging-tick.log"
    assert "token=***" in log.read_text() and SECRET not in log.read_text()
    failed = [r for r in runs(shop, "fails") if r["status"] == "failed"]
    assert all(r["exit_code"] == 3 and r["output"] == "about to fail" for r in failed)
    # One that outlives its timeout is killed.
    ended = wait_for("a run of hangs", lambda: [r for r in runs(shop, "hangs") if r["finished_at"]])
    hung = ended[0]
    assert hung["status"] == "failed"
    assert hung["detail"] == "timed out after 1s: killed" and hung["output"] == "waiting"
    assert hung["duration_s"] < 10
    # A job of another environment does not run here.
    assert runs(shop, "elsewhere") == []
    names = ["tick", "fails", "slow", "hangs", "backup-main", "by-hand"]
    assert [j["name"] for j in report(shop)["jobs"]] == names


def test_a_failed_run_notifies(shop: Project, http: Receiver) -> None:
    def told(job: str) -> list[dict[str, Any]]:
        return [
            r.json()
            for r in list(http.received)
            if r.headers.get("x-conveyor-event") == "job_failed" and r.json()["job"] == job
        ]

    body = wait_for("a job_failed webhook for fails", lambda: told("fails"))[0]
    assert body["event"] == "job_failed" and body["environment"] == "staging"
    assert body["kind"] == "job" and body["deployment"].startswith("job-run-")
    assert body["error"].startswith("exit 3") and "about to fail" in body["error"]
    assert body["reason"] == "api: echo about to fail; exit 3"
    hung = wait_for("one for hangs", lambda: told("hangs"))[0]
    assert "timed out after 1s: killed" in hung["error"]
    jobs = {r.json()["job"] for r in list(http.received)}
    assert "tick" not in jobs  # it succeeds: never notified


def test_a_run_due_while_the_last_one_goes_is_skipped(shop: Project) -> None:
    wait_for(
        "two finished runs of slow",
        lambda: len([r for r in runs(shop, "slow") if r["status"] == "succeeded"]) >= 2,
    )
    slow = runs(shop, "slow")
    finished = [r for r in slow if r["status"] == "succeeded"]
    # Never two at once: each run started after the previous one ended.
    for before, after in itertools.pairwise(finished):
        assert after["started_at"] >= before["finished_at"], (before, after)
    skipped = [r for r in slow if r["status"] == "skipped"]
    assert skipped and all(r["detail"] == "the previous run was still going" for r in skipped)


def test_a_backup_job_keeps_its_last_backups(shop: Project) -> None:
    wait_for(
        "4 backups by the job",
        lambda: len([r for r in runs(shop, "backup-main") if r["status"] == "succeeded"]) >= 4,
    )
    backups: Any = shop.json("db", "list", "main")
    mine = [b for b in backups if b["created_by"] == "job backup-main"]
    assert 1 <= len(mine) <= 3  # keep: 2, and one may be under way now
    assert all(b["verification"]["ok"] for b in mine if b["verification"])
    assert all(b["tables"] == {"public.orders": 50} for b in mine), mine
    on_disk = sorted(p.name for p in (shop.home / "backups" / "main").iterdir())
    assert len(on_disk) <= 3  # the older ones' files were deleted with them
    last = [r for r in runs(shop, "backup-main") if r["status"] == "succeeded"][-1]
    assert last["exit_code"] == 0 and "verified backup" in last["output"]


def test_jobs_json_shows_the_last_and_next_runs(shop: Project) -> None:
    data = report(shop)
    assert data["agent"]["running"] and data["agent"]["pid"]
    tick = next(j for j in data["jobs"] if j["name"] == "tick")
    assert tick["schedule"] == "* * * * * *" and tick["timezone"] == "UTC"
    # Its last run may be under way: it runs every second.
    assert tick["last_run"]["status"] in ("succeeded", "running")
    assert tick["last_run"]["exit_code"] in (0, None)
    assert tick["next_run"] > tick["last_run"]["started_at"]
    fails = next(j for j in data["jobs"] if j["name"] == "fails")
    assert fails["every"] == 2.0 and fails["last_run"]["status"] in ("failed", "running")
    by_hand = next(j for j in data["jobs"] if j["name"] == "by-hand")
    assert by_hand["next_run"].endswith("-01-01T03:00:00Z")
    human = shop.run("jobs", "staging").stdout
    assert "agent of staging: running" in human
    assert "every 2s" in human and "backup of database main" in human
    # One agent per environment: a second one, started by hand, refuses to run.
    second = shop.run("agent", "staging", check=False, timeout=60)
    assert second.returncode == 1 and "the agent of staging runs already" in second.stderr


def test_jobs_run_runs_one_now(shop: Project) -> None:
    first = shop.start("jobs", "run", "staging", "by-hand")
    try:
        wait_for("the run by hand", lambda: runs(shop, "by-hand"))
        # While it goes, another run of the job is refused, and recorded so.
        second = shop.run("jobs", "run", "staging", "by-hand", "--json", check=False)
        refused = json.loads(second.stdout)
        assert second.returncode == 1 and refused["status"] == "skipped"
        assert refused["detail"].endswith("is still going"), refused
        out, _ = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 3
    assert "about to fail" in out and "failed, exit 3" in out
    ran = [r for r in runs(shop, "by-hand") if r["status"] != "skipped"]
    assert [(r["status"], r["exit_code"], r["trigger"]) for r in ran] == [("failed", 3, "manual")]
    unknown = shop.run("jobs", "run", "staging", "nope", check=False)
    assert unknown.returncode == 2 and 'has no job "nope"' in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_a_deploy_restarts_the_agent_with_the_new_jobs(shop: Project) -> None:
    before = report(shop)["agent"]["pid"]
    shop.run("deploy", "staging")  # nothing changed: the agent keeps running
    assert report(shop)["agent"]["pid"] == before

    def change(config: dict[str, Any]) -> None:
        jobs = config["jobs"]
        del jobs["slow"], jobs["backup-main"], jobs["fails"], jobs["hangs"], jobs["by-hand"]
        jobs["hello"] = {"every": "1s", "service": "api", "command": "echo hello"}

    edit(shop, change, "other jobs")
    shop.run("deploy", "staging")
    after = report(shop)
    assert after["agent"]["running"] and after["agent"]["pid"] != before
    assert [j["name"] for j in after["jobs"]] == ["tick", "hello"]
    wait_for("a run of hello", lambda: [r for r in runs(shop, "hello") if r["exit_code"] == 0])
    stopped_at = time.time()
    time.sleep(3)  # the removed jobs are no longer scheduled: nothing new for 3 s
    assert not [
        r for r in runs(shop, "fails") if r["trigger"] == "schedule" and _epoch(r) > stopped_at
    ]


def test_a_deploy_without_jobs_stops_the_agent(shop: Project) -> None:
    kept: dict[str, Any] = {}

    def no_jobs(config: dict[str, Any]) -> None:
        kept.update(config.pop("jobs"))

    edit(shop, no_jobs, "no jobs")
    assert "stopped the agent of staging" in shop.run("deploy", "staging").stderr
    assert not report(shop)["agent"]["running"]

    def jobs_again(config: dict[str, Any]) -> None:
        config["jobs"] = kept

    edit(shop, jobs_again, "jobs again")
    assert "started the agent of staging" in shop.run("deploy", "staging").stderr
    assert report(shop)["agent"]["running"]


def test_down_stops_the_agent(shop: Project) -> None:
    shop.run("down", "staging", "--yes")
    data = report(shop)
    assert not data["agent"]["running"]
    count = len(runs(shop, "tick"))
    time.sleep(2.5)  # what would have been 2 runs
    assert len(runs(shop, "tick")) == count
    assert "not running" in shop.run("jobs", "staging").stdout


def test_shutdown_stops_the_agent(shop: Project) -> None:
    deployed = shop.run("deploy", "staging")
    assert "started the agent of staging (2 scheduled jobs)" in deployed.stderr, deployed.stderr
    pid = report(shop)["agent"]["pid"]
    done: Any = json.loads(shop.run("shutdown", "--yes", "--json").stdout)
    agents = [s for s in done["stopped"] if s["kind"] == "agent"]
    assert agents == [
        {"kind": "agent", "name": "conveyor-agent-staging", "pid": pid, "gone": True}
    ], done
    assert not report(shop)["agent"]["running"]


def _epoch(run: dict[str, Any]) -> float:
    from datetime import UTC, datetime

    started = datetime.fromisoformat(run["started_at"])
    return (started if started.tzinfo else started.replace(tzinfo=UTC)).timestamp()


def test_nothing_of_the_secret_anywhere(shop: Project) -> None:
    for path in shop.home.rglob("*"):
        if path.is_file() and "programs" not in path.parts:
            assert SECRET.encode() not in path.read_bytes(), path
