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
    config["jobs"] = {
        "where": {
            # Every 10 s: a run by hand right after a scheduled one is not skipped as
            # overlapping it (a run over SSH can take over a second on a loaded machine).
            "schedule": "*/10 * * * * *",
            "service": "api",
            "command": f'echo "$(id -un) $PWD token=$JOB_TOKEN" > "$DATA_DIR/{MARK}"; cat '
            f'"$DATA_DIR/{MARK}"',
            "environments": [ENV],
        }
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

        def finished() -> Any:
            report: Any = json.loads(shop.run("jobs", ENV, "--json").stdout)
            (job,) = report["jobs"]
            return report if job["last_run"]["status"] != "running" else None

        report = wait_for("the scheduled run to be recorded", finished, every=0.2)
        last = report["jobs"][0]["last_run"]
        assert (last["status"], last["exit_code"], last["host"]) == ("succeeded", 0, "host2")
        assert last["output"] == f"{user2} {where} token=***"  # masked in the store
        assert report["agent"]["running"]
        ran = json.loads(shop.run("jobs", "run", ENV, "where", "--json").stdout)
        assert (ran["host"], ran["exit_code"], ran["trigger"]) == ("host2", 0, "manual")
        assert SECRET.encode() not in (shop.home / "state.db").read_bytes()
    finally:
        down(shop)
