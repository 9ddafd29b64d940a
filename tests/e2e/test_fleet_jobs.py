"""End to end: a scheduled job of a service on the SSH fleet runs on the service's run host.

The agent runs on this machine under its supervisord, as on one machine, and reaches
the hosts over SSH like the CLI: the job's command runs on the run host (`run_host:
host2`), in the release directory there, with the service's variables and secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.fleet_shop import ENV, down, fleet_shop
from tests.support.testhosts import Inventory, hosts_up
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

SECRET = "fleet-job-secret-8c1d4e"
MARK = "job-ran-here"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    with hosts_up(2, tmp_path_factory.mktemp("testhosts") / "hosts") as inventory:
        yield inventory


def data_dir(hosts: Inventory, host: str) -> Path:
    """The api's DATA_DIR on `host` (a test host's files are its user's home here)."""
    user = next(h["user"] for h in hosts.hosts if h["name"] == host)
    return Path(f"/home/{user}/.conveyor/shop/data/{ENV}/api")


def test_a_job_runs_on_the_services_run_host(
    tmp_path_factory: pytest.TempPathFactory, hosts: Inventory
) -> None:
    shop = fleet_shop(tmp_path_factory.mktemp("fleet-jobs"), hosts, {"type": "rolling"})
    path = shop.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    config["environments"][ENV]["run_host"] = "host2"
    config["environments"][ENV]["services"] = {"api": {"replicas": 2}, "web": {"replicas": 1}}
    config["environments"][ENV]["secrets"] = {"JOB_TOKEN": {"env": "SHOP_JOB_TOKEN"}}
    command = f'echo "$(id -un) $PWD token=$JOB_TOKEN" > "$DATA_DIR/{MARK}"; cat "$DATA_DIR/{MARK}"'
    config["jobs"] = {
        "where": {
            "schedule": "*/2 * * * * *",
            "service": "api",
            "command": command,
            "environments": [ENV],
        },
        # Run by hand only (at 03:00 on January 1st): a job of its own, so that a scheduled
        # run of `where` still going (over SSH, on a loaded machine) cannot make it skip.
        "by-hand": {
            "schedule": "0 3 1 1 *",
            "service": "api",
            "command": command,
            "environments": [ENV],
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    shop.commit("a job on the fleet")
    shop.env["SHOP_JOB_TOKEN"] = SECRET
    try:
        shop.run("deploy", ENV, "--build", timeout=300)
        mark = data_dir(hosts, "host2") / MARK
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not mark.exists():
            time.sleep(0.3)
        user2 = next(h["user"] for h in hosts.hosts if h["name"] == "host2")
        ran_as, where, token = mark.read_text().split()
        assert ran_as == user2
        assert where.startswith(f"/home/{user2}/.conveyor/shop/releases/")
        assert token == f"token={SECRET}"  # the secret reached the command on the host
        assert not (data_dir(hosts, "host1") / MARK).exists()

        def succeeded() -> Any:
            """The report once `where`'s latest run is a finished one (not a run going, or
            one skipped because the one before it was still going)."""
            report: Any = json.loads(shop.run("jobs", ENV, "--json").stdout)
            (job,) = [j for j in report["jobs"] if j["name"] == "where"]
            last = job["last_run"]
            return (report, last) if last and last["status"] in ("succeeded", "failed") else None

        report, last = wait_for("a scheduled run recorded", succeeded, every=0.2)
        assert (last["status"], last["exit_code"], last["host"]) == ("succeeded", 0, "host2")
        assert last["output"] == f"{user2} {where} token=***"  # masked in the store
        assert report["agent"]["running"]
        ran = json.loads(shop.run("jobs", "run", ENV, "by-hand", "--json").stdout)
        assert (ran["host"], ran["exit_code"], ran["trigger"]) == ("host2", 0, "manual")
        assert ran["output"] == f"{user2} {where} token=***"
        assert SECRET.encode() not in (shop.home / "state.db").read_bytes()
    finally:
        down(shop)
