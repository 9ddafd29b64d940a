"""End to end: the shop's `fleet` environment on 2 test hosts with its router on one of
them (`router_host: host1`). Caddy runs on host1 under the project's supervisord there,
as host1's user, from the binary the first deploy copied there; nothing routes on this
machine, and the traffic enters at host1's address. Under load: a canary across both
hosts gets its exact share from the router on host1, and its analysis, which counts
the requests from host1's access log, promotes it; a bad canary's analysis aborts it;
`down` takes the environment off host1's Caddy.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conveyor.paths import Paths
from tests.e2e.test_fleet_faults import link, no_traceback, waiting_at
from tests.e2e.test_fleet_strategies import history, only_api, serving
from tests.e2e.test_progressive import releases_seen
from tests.e2e.test_shop import build, change_api
from tests.support.fleet_shop import ENV, down, fleet_url, placement, set_strategy
from tests.support.load import traffic
from tests.support.project import Project, make_project
from tests.support.testhosts import Inventory, hosts_up

pytestmark = pytest.mark.e2e

PORT = 8070  # on host1's address, in its own network namespace
QUICK = {
    "quick": {
        "interval": "500ms",
        "duration": "4s",
        "max_duration": "40s",
        "min_requests": 50,
        # What this test is about is the counting from host1's log: the error rate.
        # (A latency threshold would judge how loaded this machine is.)
        "thresholds": ["error_rate < 2%"],
    }
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Inventory]]:
    with hosts_up(2, tmp_path_factory.mktemp("testhosts") / "hosts") as hosts:
        shop = make_project(tmp_path_factory.mktemp("fleet"))
        shop.env["SHOP_FLEET_LISTEN"] = f"{hosts.hosts[0]['address']}:{PORT}"
        shop.env["CONVEYOR_TESTHOSTS"] = str(hosts.path)
        path = shop.root / "conveyor.yml"
        config = yaml.safe_load(path.read_text())
        config["environments"][ENV]["router_host"] = "host1"
        config["environments"][ENV]["services"] = {"api": {"replicas": 2}, "web": {"replicas": 2}}
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        shop.commit("fleet: the router on host1")
        try:
            shop.run("hosts", "trust", ENV, "--yes")
            shop.run("setup", ENV, timeout=300)
            deployed = shop.run("deploy", ENV, "--build", timeout=300)
            assert "started Caddy on host host1" in deployed.stdout + deployed.stderr
            yield shop, hosts
        finally:
            down(shop)


def processes(user: str, pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-a", "-u", user, "-f", pattern], capture_output=True)
    return found.stdout.decode().splitlines()


def test_the_router_runs_on_host1_and_nothing_routes_here(
    fleet: tuple[Project, Inventory],
) -> None:
    shop, hosts = fleet
    (caddy,) = processes(hosts.hosts[0]["user"], "caddy run")
    assert "/.conveyor/" in caddy and "/lib/caddy run --config" in caddy
    assert processes(hosts.hosts[1]["user"], "caddy run") == []
    paths = Paths(shop.home)
    assert not paths.caddy_admin_socket.exists()
    assert subprocess.run(["pgrep", "-f", str(paths.caddy_dir)], capture_output=True).stdout == b""
    # Both hosts serve, through the router on host1.
    with traffic(fleet_url(shop), clients=2, count_bodies=True) as load:
        time.sleep(2)
        result = load.stop()
    assert result.failures == 0 and result.requests > 100, result.summary()
    assert sorted(h for h, _, s in placement(shop).values() if s == "serving") == [
        "host1",
        "host2",
    ]
    # `status` finds nothing wrong: the listen address is host1's, not this machine's.
    (report,) = json.loads(shop.run("status", ENV, "--json").stdout)["environments"]
    assert report["router_host"] == "host1" and report["mismatches"] == [], report


def test_a_canary_gets_its_share_from_the_router_on_host1_and_its_analysis_promotes_it(
    fleet: tuple[Project, Inventory],
) -> None:
    shop, _ = fleet
    set_strategy(
        shop,
        {"type": "canary", "steps": [{"set_weight": 50}, {"pause": {}}, {"analysis": "quick"}]},
        QUICK,
    )
    stable = serving(shop)
    change_api(shop, f"canary {time.time()}")
    canary = build(shop)["api"]
    paused = shop.run("deploy", ENV, *only_api(canary, shop), "--json", check=False, timeout=300)
    assert paused.returncode == 3, paused.stderr
    with traffic(fleet_url(shop), clients=4, count_bodies=True) as load:
        time.sleep(4)
        result = load.stop()
    seen = releases_seen(result)
    share = 100 * seen[canary] / sum(seen.values())
    assert sum(seen.values()) > 300 and result.failures == 0, result.summary()
    assert abs(share - 50) <= 5, (share, seen)

    # The analysis counts the requests from the access log on host1, and passes.
    with traffic(fleet_url(shop), clients=4) as load:
        promoted = shop.run("promote", ENV, "--json", timeout=300)
        result = load.stop()
    assert json.loads(promoted.stdout)["status"] == "succeeded"
    assert result.failures == 0, result.summary()
    (record,) = history(shop)
    explained = json.loads(shop.run("explain", str(record["id"]), "--json").stdout)
    (run,) = explained["analyses"]
    assert run["verdict"]["decision"] == "PASS", run
    assert serving(shop) == canary != stable


def test_a_bad_canary_is_aborted_by_the_analysis_of_the_counts_from_host1(
    fleet: tuple[Project, Inventory],
) -> None:
    shop, _ = fleet
    set_strategy(
        shop,
        {
            "type": "canary",
            "analysis": "background",
            "steps": [{"set_weight": 50}, {"pause": "10m"}],
        },
        {"background": {"interval": "500ms", "duration": "5m", "min_requests": 50}},
    )
    stable = serving(shop)
    before = {n: (h, r) for n, (h, r, s) in placement(shop).items() if s == "serving"}
    shop.write_faults(error_rate=0.3)
    try:
        change_api(shop, f"bad {time.time()}")
        bad = build(shop)["api"]
        with traffic(fleet_url(shop), clients=4) as load:
            aborted = shop.run("deploy", ENV, *only_api(bad, shop), check=False, timeout=300)
            result = load.stop()
    finally:
        shop.clear_faults()
    assert aborted.returncode == 1, aborted.stdout + aborted.stderr
    assert "was aborted" in aborted.stderr and "background analysis" in aborted.stderr
    assert serving(shop) == stable
    after = {n: (h, r) for n, (h, r, s) in placement(shop).items() if s == "serving"}
    assert after == before
    assert result.failures / max(1, result.requests) < 0.1, result.summary()


def test_the_router_host_lost_mid_deploy_stops_it_for_resume_naming_the_host(
    fleet: tuple[Project, Inventory], tmp_path: Path
) -> None:
    """host1, the router's host, goes away (its link down) just before the deploy's first
    weight change: the deploy fails naming host1 and the step, and cannot restore the
    router's weights without it, so the deployment waits for `resume`; with host1 back,
    `resume` finishes the rollback and the previous release serves alone."""
    shop, hosts = fleet
    set_strategy(shop, {"type": "rolling"})
    was = serving(shop)
    change_api(shop, f"router lost {time.time()}")
    release = build(shop)["api"]
    arguments = only_api(release, shop)
    proposed = shop.json("deploy", ENV, *arguments, "--dry-run")
    assert isinstance(proposed, dict)
    weights = next(n for n, s in enumerate(proposed["steps"], 1) if s["kind"] == "set_weights")
    go_on = tmp_path / "go-on"
    deploying = shop.start(
        "deploy",
        ENV,
        *arguments,
        env={"CONVEYOR_FAILPOINTS": f"executor.before_step:{weights}=wait:{go_on}"},
    )
    waiting_at(deploying)
    link(hosts, 0, up=False)
    try:
        go_on.touch()
        out, err = deploying.communicate(timeout=180)
    finally:
        link(hosts, 0, up=True)
    failed = subprocess.CompletedProcess(deploying.args, deploying.returncode, out, err)
    no_traceback(failed)
    assert failed.returncode == 1, err
    assert f"step {weights} (route api traffic to " in err, err
    assert "host host1 (" in err and "is unreachable" in err, err
    assert "stopped before restoring the previous releases" in err, err
    assert "run `conveyor resume fleet` to finish restoring them" in err, err

    report = json.loads(shop.run("status", ENV, "--json").stdout)["environments"][0]
    assert report["unfinished"] and report["mismatches"] == [], report
    resumed = shop.run("resume", ENV, timeout=300)
    no_traceback(resumed)
    (record,) = history(shop)
    assert record["status"] == "rolled_back", record
    assert serving(shop) == was
    assert {r for _, r, _ in placement(shop, "api").values()} == {was}  # the new one is gone


def test_down_takes_the_environment_off_the_router_on_host1(
    fleet: tuple[Project, Inventory],
) -> None:
    shop, hosts = fleet
    shop.run("down", ENV, "--yes", timeout=300)
    with pytest.raises(OSError):
        socket.create_connection((hosts.hosts[0]["address"], PORT), timeout=5).close()
    # Caddy itself keeps running on host1 (for the next deploy); its access log is gone.
    assert processes(hosts.hosts[0]["user"], "caddy run")
