"""End to end: faults of a fleet. The shop's `fleet` environment on three SSH test hosts
(`scripts/testhosts`) behind the router on this machine, while hosts go away, refuse the
login, change their key, lose their supervisord, and the CLI is killed mid-deploy.

A host "goes away" as a real one does: the link of its network namespace goes down, so
its packets are dropped (no refusal, no reset) until it comes back.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.ssh import known_hosts
from tests.support.load import traffic
from tests.support.project import Project, free_port, make_project
from tests.support.testhosts import Inventory, hosts_up, namespace_prefix

pytestmark = pytest.mark.slow

ENV = "fleet"


@dataclass
class Fleet:
    shop: Project
    hosts: Inventory
    url: str  # the api's version endpoint through the router


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    with hosts_up(3, tmp / "hosts") as hosts:
        shop = make_project(tmp)
        listen = f"127.0.0.1:{free_port()}"
        shop.env["CONVEYOR_TESTHOSTS"] = str(hosts.path)
        shop.env["SHOP_FLEET_LISTEN"] = listen
        try:
            shop.run("hosts", "trust", ENV, "--yes")
            shop.run("setup", ENV)
            shop.run("deploy", ENV, "--build", timeout=300)
            yield Fleet(shop, hosts, f"http://{listen}/api/version")
        finally:
            shop.shutdown()


@pytest.fixture
def healthy(fleet: Fleet) -> Iterator[Fleet]:
    """The fleet with every host's link up again after the test."""
    try:
        yield fleet
    finally:
        for index in range(3):
            link(fleet.hosts, index, up=True)


# -- what a user sees -----------------------------------------------------------------------


def link(hosts: Inventory, index: int, *, up: bool) -> None:
    """Bring the link of test host `index` (from 0) up or down, as a host that goes away."""
    veth = f"{namespace_prefix()}{hosts.hosts[index]['name']}"
    subprocess.run(["ip", "link", "set", veth, "up" if up else "down"], check=True)


def programs(hosts: Inventory, index: int) -> dict[str, str]:
    """`supervisorctl status` of the project's supervisord on test host `index`:
    program name -> state (a host's files are its user's home on this machine)."""
    home = Path(f"~{hosts.hosts[index]['user']}").expanduser() / ".conveyor" / "shop"
    done = subprocess.run(
        [
            "python3",
            "-m",
            "supervisor.supervisorctl",
            "-c",
            str(home / "supervisor" / "supervisord.conf"),
            "status",
        ],
        env={**os.environ, "PYTHONPATH": str(home / "lib")},
        capture_output=True,
        text=True,
        check=False,
    )
    found = {}
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith(f"{ENV}-"):
            found[fields[0]] = fields[1]
    return found


def all_programs(hosts: Inventory) -> dict[str, tuple[str, str]]:
    """Every program on every host: name -> (host, state)."""
    return {
        name: (hosts.hosts[i]["name"], state)
        for i in range(3)
        for name, state in programs(hosts, i).items()
    }


def recorded(shop: Project) -> dict[str, tuple[str, str]]:
    """The instances `conveyor status` lists: name -> (host, release)."""
    report = shop.json("status", ENV)
    assert isinstance(report, dict)
    return {
        i["name"]: (i["host"], i["release"])
        for s in report["environments"][0]["services"]
        for i in s["instances"]
    }


def assert_no_orphans(fleet: Fleet) -> dict[str, tuple[str, str]]:
    """Each host runs exactly the instances recorded on it, every one RUNNING."""
    instances = recorded(fleet.shop)
    running = all_programs(fleet.hosts)
    assert {n: h for n, (h, _) in running.items()} == {n: h for n, (h, _) in instances.items()}
    assert {s for _, s in running.values()} == {"RUNNING"}, running
    return instances


def serving(fleet: Fleet, requests: int = 12) -> set[str]:
    """The api releases that answer through the router."""
    seen = set()
    for _ in range(requests):
        with urllib.request.urlopen(fleet.url, timeout=10) as response:
            seen.add(json.loads(response.read())["release"])
    return seen


def current(fleet: Fleet) -> str:
    history = fleet.shop.json("history", ENV)
    assert isinstance(history, list)
    done = next(d for d in history if d["status"] == "succeeded")
    return str(done["releases"]["api"])


def new_api(fleet: Fleet, marker: str) -> str:
    (fleet.shop.root / "api" / "CHANGES").write_text(marker + "\n")
    fleet.shop.commit(marker)
    built = fleet.shop.json("build")
    assert isinstance(built, list)
    return next(r["id"] for r in built if r["service"] == "api")


def plan(fleet: Fleet, release: str) -> list[dict[str, Any]]:
    proposed = fleet.shop.json("deploy", ENV, "-r", f"api={release}", "--dry-run")
    assert isinstance(proposed, dict)
    steps: list[dict[str, Any]] = proposed["steps"]
    return steps


def step_index(steps: list[dict[str, Any]], kind: str, nth: int = 1, text: str = "") -> int:
    """The number (from 1) of the nth step of `kind` whose description holds `text`."""
    found = [
        n
        for n, s in enumerate(steps, start=1)
        if s["kind"] == kind and text in s.get("description", "")
    ]
    return found[nth - 1]


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


def history_ids(fleet: Fleet) -> list[str]:
    history = fleet.shop.json("history", ENV, "-n", "100")
    assert isinstance(history, list)
    return [d["id"] for d in history]


def waiting_at(process: subprocess.Popen[str]) -> list[str]:
    """Read the process's stderr until a `wait` failpoint says it waits; the lines read."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("failpoint ") and ": waiting for " in line:
            return lines
    raise AssertionError("".join(lines))


# -- the faults ----------------------------------------------------------------------------------


def test_a_host_unreachable_before_the_deploy_refuses_it(healthy: Fleet) -> None:
    fleet = healthy
    before = assert_no_orphans(fleet)
    was = current(fleet)
    deployments = history_ids(fleet)
    release = new_api(fleet, "refused")

    link(fleet.hosts, 2, up=False)
    started = time.monotonic()
    refused = fleet.shop.run("deploy", ENV, "-r", f"api={release}", check=False)
    took = time.monotonic() - started
    no_traceback(refused)
    assert refused.returncode == 1, refused.stderr
    assert "error: host host3 (" in refused.stderr and "is unreachable" in refused.stderr
    assert "conveyor hosts ENV" in refused.stderr  # what to do
    assert took < 30, took  # one connect timeout, not a retry loop

    # Nothing changed: no deployment, the same programs on the hosts that answer,
    # the same release serving.
    assert history_ids(fleet) == deployments
    assert serving(fleet) == {was}
    link(fleet.hosts, 2, up=True)
    assert assert_no_orphans(fleet) == before


def test_a_host_lost_mid_deploy_loses_its_traffic_and_the_deploy_rolls_back(
    healthy: Fleet, tmp_path: Path
) -> None:
    fleet = healthy
    was = current(fleet)
    release = new_api(fleet, "lost")
    steps = plan(fleet, release)
    # host2's new instance is started, then host2 goes away while it is waited for.
    wait = step_index(steps, "start", text="on host2") + 1
    assert steps[wait - 1]["kind"] == "wait_healthy"
    go_on = tmp_path / "go-on"
    deploying = fleet.shop.start(
        "deploy",
        ENV,
        "-r",
        f"api={release}",
        env={"CONVEYOR_FAILPOINTS": f"executor.before_step:{wait}=wait:{go_on}"},
    )
    waiting_at(deploying)
    link(fleet.hosts, 1, up=False)
    started = time.monotonic()
    go_on.touch()
    out, err = deploying.communicate(timeout=180)
    took = time.monotonic() - started
    result = subprocess.CompletedProcess(deploying.args, deploying.returncode, out, err)
    no_traceback(result)
    assert result.returncode == 1, err
    assert f"step {wait} (wait until " in err, err
    assert "host host2 (" in err and "is unreachable" in err, err
    assert "failed and was rolled back" in err, err
    assert re.search(r"host host2 is unreachable: no more traffic to fleet-\S+-2\b", err), err
    assert took < 60, took  # SSH keepalives: seconds, not the TCP stack's minutes

    # With host2 still away, every request is answered by the previous release on the
    # other hosts: host2 gets none.
    assert serving(fleet, requests=30) == {was}
    history = fleet.shop.json("history", ENV)
    assert isinstance(history, list)
    assert history[0]["status"] == "rolled_back"
    assert "host2" in history[0]["error"]
    on_host2 = {n for n, (h, _) in recorded(fleet.shop).items() if h == "host2"}
    assert not on_host2  # replaced on host1 and host3

    # host2 comes back with what it ran: the next deploy stops those programs and puts
    # the fleet together again.
    link(fleet.hosts, 1, up=True)
    assert programs(fleet.hosts, 1)  # still running there
    deployed = fleet.shop.run("deploy", ENV, "-r", f"api={release}")
    assert re.search(
        r"note: stopped fleet-api-\S+ on host2: no deployment records it", deployed.stderr
    )
    assert_no_orphans(fleet)
    assert serving(fleet) == {release}


def test_a_wrong_key_and_a_changed_host_key_are_refused_once_without_a_prompt(
    healthy: Fleet, tmp_path: Path
) -> None:
    fleet = healthy
    before = assert_no_orphans(fleet)
    deployments = history_ids(fleet)
    # An inventory whose key the hosts do not know.
    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    data = json.loads(fleet.hosts.path.read_text())
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({**data, "identity": str(wrong)}))
    logs = [fleet.hosts.path.parent / h["name"] / "sshd.log" for h in fleet.hosts.hosts]
    lengths = [len(log.read_text().splitlines()) for log in logs]

    refused = fleet.shop.run(
        "deploy", ENV, env={"CONVEYOR_TESTHOSTS": str(inventory)}, check=False, timeout=60
    )
    no_traceback(refused)
    assert refused.returncode == 1, refused.stderr
    assert re.search(
        r"error: host host\d \(cv\d?host\d@[0-9.]+:22\): SSH login refused", refused.stderr
    )
    assert "authorized_keys" in refused.stderr  # what to do
    assert "password" not in refused.stderr.lower()
    # Exactly one login attempt per host (sshd logs each refused one).
    for log, length in zip(logs, lengths, strict=True):
        new = log.read_text().splitlines()[length:]
        attempts = [line for line in new if "Connection closed by authenticating user" in line]
        assert len(attempts) <= 1, new
        assert not [line for line in new if "kex_exchange_identification" in line], new

    # host1's recorded key is another host's: refused, naming host1 and its fingerprint.
    path = fleet.shop.home / "known_hosts"
    saved = path.read_text()
    host1 = fleet.hosts.hosts[0]
    kept = [line for line in saved.splitlines() if not line.startswith(host1["address"] + " ")]
    path.write_text("\n".join(kept) + "\n")
    known_hosts.record(path, host1["address"], fleet.hosts.hosts[1]["host_key"])
    try:
        changed = fleet.shop.run("deploy", ENV, check=False, timeout=60)
    finally:
        path.write_text(saved)
    no_traceback(changed)
    assert changed.returncode == 1, changed.stderr
    assert "host host1 (" in changed.stderr and "its SSH host key has CHANGED" in changed.stderr
    assert host1["fingerprint"] in changed.stderr
    assert "conveyor hosts trust ENV" in changed.stderr

    assert history_ids(fleet) == deployments
    assert assert_no_orphans(fleet) == before


def test_a_hosts_supervisord_killed_mid_deploy_is_started_again(
    healthy: Fleet, tmp_path: Path
) -> None:
    fleet = healthy
    release = new_api(fleet, "rebooted")
    steps = plan(fleet, release)
    start = step_index(steps, "start", text="on host2")
    go_on = tmp_path / "go-on"
    deploying = fleet.shop.start(
        "deploy",
        ENV,
        "-r",
        f"api={release}",
        env={"CONVEYOR_FAILPOINTS": f"executor.before_step:{start}=wait:{go_on}"},
    )
    waiting_at(deploying)
    # host2 "reboots": its supervisord and every program it ran are killed.
    user = fleet.hosts.hosts[1]["user"]
    pidfile = Path(f"~{user}").expanduser() / ".conveyor/shop/supervisor/supervisord.pid"
    pid = int(pidfile.read_text())
    subprocess.run(["pkill", "-KILL", "-s", str(pid)], check=True)
    assert not programs(fleet.hosts, 1)
    go_on.touch()
    _, err = deploying.communicate(timeout=180)
    assert deploying.returncode == 0, err
    assert int(pidfile.read_text()) != pid  # a new supervisord
    assert_no_orphans(fleet)
    assert serving(fleet) == {release}


def test_killed_at_step_boundaries_of_a_three_host_rolling_deploy(healthy: Fleet) -> None:
    fleet = healthy
    releases = [current(fleet), new_api(fleet, "killed")]
    steps = plan(fleet, releases[1])
    assert {s["kind"] for s in steps} >= {"ship", "start", "wait_healthy", "set_weights", "stop"}
    # (failpoint, then resume or abort): a kill at each kind of step boundary, once each:
    # ship|start, start|health, route|drain, stop|start (the last ship's, the second
    # start's, the second route's and the first stop's).
    ships = sum(s["kind"] == "ship" for s in steps)
    kills = [
        (f"after_step:{step_index(steps, 'ship', nth=ships)}", "resume"),
        (f"after_step:{step_index(steps, 'start', nth=2)}", "abort"),
        (f"after_step:{step_index(steps, 'set_weights', nth=2)}", "resume"),
        (f"after_step:{step_index(steps, 'stop', nth=1)}", "abort"),
    ]
    serving_now = releases[0]
    with traffic(fleet.url, clients=3) as load:
        for point, then in kills:
            target = releases[1] if serving_now == releases[0] else releases[0]
            killed = fleet.shop.run(
                "deploy",
                ENV,
                "-r",
                f"api={target}",
                check=False,
                env={"CONVEYOR_FAILPOINTS": f"executor.{point}=crash"},
            )
            assert killed.returncode == -9, killed.stderr
            fleet.shop.run(then, ENV, timeout=180)
            if then == "resume":
                serving_now = target
            instances = assert_no_orphans(fleet)
            api = {r for n, (_, r) in instances.items() if n.startswith(f"{ENV}-api-")}
            assert api == {serving_now}, (point, then, instances)
            assert serving(fleet) == {serving_now}
        result = load.stop()
    assert result.failures == 0, result
    assert result.requests > 1000
    history = fleet.shop.json("history", ENV, "-n", str(len(kills)))
    assert isinstance(history, list)
    ended = [d["status"] for d in reversed(history)]
    assert ended == ["succeeded" if then == "resume" else "aborted" for _, then in kills]
