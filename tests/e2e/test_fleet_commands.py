"""End to end: the everyday commands on the shop's `fleet` environment, deployed once on
three SSH test hosts (`scripts/testhosts`), as a user of Kamal would expect them.

`status` names each instance's host; `logs` reads every host, each line prefixed
with host and instance, and `-f` merges them live; a host that cannot be reached
is named in a warning while the others are still shown; command health checks and
smoke tests run on the instance's host; `conveyor run` runs on the run host and
says so; `explain` names the hosts of a rollback's steps; `down` leaves nothing
running on any host. `run_as:` is refused for an environment on hosts.

The tests run in file order: the last two change what runs (a rollback, then down).
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.project import Project, free_port, make_project
from tests.support.testhosts import Inventory, hosts_up

pytestmark = pytest.mark.slow

HOSTS = ("host1", "host2", "host3")
# Leaves a mark of who ran it in the instance's DATA_DIR, then checks the instance.
HEALTH = (
    'id -un > "$DATA_DIR/health-ran-as" && python3 -c "import os, urllib.request; '
    "urllib.request.urlopen('http://%s:%s/health' % (os.environ['HOST'], os.environ['PORT']),"
    ' timeout=2)"'
)
SMOKE = (
    'id -un > "$DATA_DIR/smoke-ran-as" && python3 -c "import os, urllib.request; '
    "urllib.request.urlopen(os.environ['SMOKE_URL'] + '/health', timeout=2)\""
)
LINE = re.compile(r"^(host\d) (fleet-api-\w+-\d) \| ")


@dataclass
class Fleet:
    project: Project
    hosts: Inventory
    url: str

    def user(self, host: str) -> str:
        return next(h["user"] for h in self.hosts.hosts if h["name"] == host)

    def data(self, host: str, service: str) -> Path:
        """The service's DATA_DIR on the host (a host's files are its user's home here)."""
        return Path(f"/home/{self.user(host)}/.conveyor/shop/data/fleet/{service}")

    def status(self, **env: str) -> dict[str, Any]:
        out = self.project.run("status", "fleet", "--json", env=env).stdout
        report: dict[str, Any] = json.loads(out)["environments"][0]
        return report

    def broken_inventory(self) -> dict[str, str]:
        """The environment of a command that finds host3 unreachable (nothing listens on
        the port its inventory gives)."""
        data = json.loads(self.hosts.path.read_text())
        data["hosts"][2]["port"] = free_port()
        path = self.project.root.parent / "broken-inventory.json"
        path.write_text(json.dumps(data))
        return {"CONVEYOR_TESTHOSTS": str(path)}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet-commands")
    with hosts_up(len(HOSTS), tmp / "hosts") as hosts:
        project = make_project(tmp)
        listen = f"127.0.0.1:{free_port()}"
        project.env.update({"SHOP_FLEET_LISTEN": listen, "CONVEYOR_TESTHOSTS": str(hosts.path)})
        project.configure_service(
            "api",
            health={"type": "command", "command": HEALTH, "interval": "200ms"},
        )
        project.configure_service("web", smoke=[{"command": SMOKE}])
        # One batch per service: a rollback replaces every host's instance at once.
        project.configure("fleet", {"type": "rolling", "max_surge": 3})
        project.run("hosts", "trust", "fleet", "--yes")
        project.run("setup", "fleet")
        project.run("deploy", "fleet", "--build", timeout=300)
        try:
            yield Fleet(project, hosts, f"http://{listen}")
        finally:
            project.run("down", "fleet", "--yes", check=False)
            project.shutdown()


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def _ctl_status(fleet: Fleet, host: str) -> str:
    """`supervisorctl status` of the project's supervisord on the host, as its user."""
    script = (
        "cd ~/.conveyor/shop && PYTHONPATH=lib python3 -m supervisor.supervisorctl "
        "-c supervisor/supervisord.conf status"
    )
    done = subprocess.run(
        ["runuser", "-u", fleet.user(host), "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


def test_status_shows_each_instances_host(fleet: Fleet) -> None:
    # supervisord says RUNNING once a program has lived its `startsecs` (1 s); a quick
    # deploy can end inside that second (STARTING), so this looks after it.
    deadline = time.monotonic() + 10
    report = fleet.status()
    while time.monotonic() < deadline and any(
        i["process"] == "starting" for s in report["services"] for i in s["instances"]
    ):
        time.sleep(0.2)
        report = fleet.status()
    assert report["warnings"] == [] and report["mismatches"] == []
    for service in report["services"]:
        assert service["healthy"] == 3
        instances = service["instances"]
        assert sorted(i["host"] for i in instances) == list(HOSTS)
        assert {i["process"] for i in instances} == {"running"}
    table = fleet.project.run("status", "fleet").stdout
    for instance in report["services"][0]["instances"]:
        assert re.search(
            rf"{instance['name']}\s+\S+\s+{instance['host']}:{instance['port']}\s+serving\s+"
            r"process=running",
            table,
        ), table


def test_command_checks_and_smoke_tests_run_on_the_instances_hosts(fleet: Fleet) -> None:
    for host in HOSTS:
        assert (fleet.data(host, "api") / "health-ran-as").read_text().strip() == fleet.user(host)
    smoked = [h for h in HOSTS if (fleet.data(h, "web") / "smoke-ran-as").exists()]
    assert len(smoked) == 1  # once per deploy, on the first healthy new instance
    assert (fleet.data(smoked[0], "web") / "smoke-ran-as").read_text().strip() == fleet.user(
        smoked[0]
    )
    local = fleet.project.home / "data" / "fleet"
    assert not list(local.glob("*/*-ran-as"))  # nothing ran on the deployer


def test_logs_prefix_every_line_with_host_and_instance(fleet: Fleet) -> None:
    done = fleet.project.run("logs", "fleet", "api", "-n", "3")
    lines = done.stdout.splitlines()
    assert lines and all(LINE.match(line) for line in lines), done.stdout
    assert {LINE.match(line)[1] for line in lines} == set(HOSTS)  # type: ignore[index]
    assert "listening on http://10.77." in done.stdout
    assert done.stderr == ""


def test_logs_follow_merges_every_host_live(fleet: Fleet) -> None:
    process = fleet.project.start("logs", "fleet", "api", "-f", "-n", "0")
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    seen: dict[str, str] = {}
    every: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while set(seen) != set(HOSTS) and time.monotonic() < deadline:
            _get(fleet.url + "/api/version")  # the router spreads them over the hosts
            try:
                while True:
                    line = lines.get(timeout=0.1)
                    every.append(line)
                    match = LINE.match(line)
                    assert match, line
                    if '/version"' in line:
                        seen.setdefault(match[1], line)
            except queue.Empty:
                pass
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert set(seen) == set(HOSTS), every


def test_an_unreachable_host_is_named_and_the_others_still_shown(fleet: Fleet) -> None:
    broken = fleet.broken_inventory()
    done = fleet.project.run("logs", "fleet", "api", "-n", "2", env=broken)
    shown = {LINE.match(line)[1] for line in done.stdout.splitlines()}  # type: ignore[index]
    assert shown == {"host1", "host2"}
    assert "warning: host host3 (" in done.stderr and "is unreachable" in done.stderr
    assert "Traceback" not in done.stderr

    report = fleet.status(**broken)
    assert len(report["warnings"]) == 1 and report["warnings"][0].startswith("host host3 (")
    for service in report["services"]:
        processes = {i["host"]: i["process"] for i in service["instances"]}
        assert processes == {"host1": "running", "host2": "running", "host3": "unreachable"}
        assert service["healthy"] == 2
    table = fleet.project.run("status", "fleet", env=broken).stdout
    assert "warning: host host3 (" in table and "process=unreachable" in table


def test_run_runs_on_the_run_host_and_says_where(fleet: Fleet) -> None:
    done = fleet.project.run("run", "fleet", "api", "--", "sh", "-c", "id -un; pwd")
    user, directory = done.stdout.split()
    assert user == fleet.user("host1")  # the service's first host: the default run host
    assert directory.startswith(f"/home/{user}/.conveyor/shop/releases/api/")
    assert f"running on host1 ({user}@" in done.stderr
    assert "Traceback" not in done.stderr
    history = fleet.project.run("history", "fleet").stdout
    assert re.search(r'run  api  "sh -c \'id -un; pwd\'"  exit 0  on host1', history), history


def test_run_as_is_refused_for_an_environment_on_hosts(fleet: Fleet) -> None:
    config = yaml.safe_load((fleet.project.root / "conveyor.yml").read_text())
    config["services"]["api"]["run_as"] = "shop"
    other = fleet.project.root.parent / "run-as.yml"
    other.write_text(yaml.safe_dump(config, sort_keys=False))
    done = fleet.project.run("--config", str(other), "validate", check=False)
    assert done.returncode == 2
    assert 'services/api/run_as: environment "fleet" runs on hosts over SSH' in done.stderr
    assert "Traceback" not in done.stderr


def test_rollback_covers_every_host_and_explain_names_them(fleet: Fleet) -> None:
    project = fleet.project
    before = fleet.status()["services"][0]
    assert before["name"] == "api"
    with (project.root / "api" / "server.py").open("a") as source:
        source.write("# v2\n")  # only the api changes: web is left as it is
    project.commit("v2")
    deployed = project.run("deploy", "fleet", "--build", timeout=300)
    assert fleet.status()["services"][0]["release"] != before["release"]
    # history says where each deployment went
    history = json.loads(project.run("history", "fleet", "--json").stdout)
    latest = next(d for d in history if d.get("kind") == "deploy")
    assert latest["hosts"] == list(HOSTS)
    assert re.search(
        r"deploy +succeeded .*host1,host2,host3", project.run("history", "fleet").stdout
    )
    # The progress lines of steps on instances name their hosts.
    assert re.search(
        r"\[api\] wait until fleet-api-\S+(, fleet-api-\S+)* healthy on host\d", deployed.stderr
    )
    assert re.search(r"\[api\] stop fleet-api-\S+(, fleet-api-\S+)* on host\d", deployed.stderr)

    rollback = json.loads(project.run("rollback", "fleet", "--json", timeout=300).stdout)
    api = fleet.status()["services"][0]
    assert api["release"] == before["release"] and api["healthy"] == 3
    assert {(i["host"], i["release"]) for i in api["instances"]} == {
        (h, before["release"]) for h in HOSTS
    }

    explained = json.loads(project.run("explain", rollback["id"], "--json").stdout)
    for kind in ("wait_healthy", "drain", "stop"):
        hosts = [h for step in explained["steps"] if step["kind"] == kind for h in step["hosts"]]
        assert sorted(hosts) == list(HOSTS), kind
    text = project.run("explain", rollback["id"]).stdout
    assert re.search(r"stop fleet-api-\S+, fleet-api-\S+, fleet-api-\S+ on host\d, host\d", text)


def test_down_leaves_nothing_running_on_any_host(fleet: Fleet) -> None:
    assert all("RUNNING" in _ctl_status(fleet, h) for h in HOSTS)
    fleet.project.run("down", "fleet", "--yes", timeout=120)
    for host in HOSTS:
        assert _ctl_status(fleet, host).strip() == "", host
    report = fleet.status()
    assert all(s["release"] is None and s["instances"] == [] for s in report["services"])
    with pytest.raises(OSError):  # the router no longer listens
        urllib.request.urlopen(fleet.url + "/api/version", timeout=5)
