"""End to end: the shop's `fleet` environment on 3 test hosts behind one router, under
load: rolling in host batches, blue-green with a preview, canaries whose analysis reads the router's counters of
remote instances (a good release promoted, a bad one aborted by itself), and a rollback
inside the window that sends the traffic back to the warm instances on their hosts.

One copy of the shop serves the whole module (setting up hosts and shipping the first
release is the slow part); each test starts from whatever release serves and changes
only the api (`only_api`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.e2e.test_progressive import releases_seen
from tests.e2e.test_shop import build, change_api, get_json
from tests.support.fleet_shop import ENV, down, fleet_shop, fleet_url, placement, set_strategy
from tests.support.load import traffic
from tests.support.project import Project, free_port
from tests.support.testhosts import hosts_up

pytestmark = pytest.mark.slow

HOSTS = ["host1", "host2", "host3"]
BATCHES = {"type": "rolling", "batch": 1}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    with hosts_up(3, tmp_path_factory.mktemp("testhosts") / "hosts") as hosts:
        shop = fleet_shop(tmp_path_factory.mktemp("fleet"), hosts, BATCHES)
        try:
            shop.run("deploy", ENV, "--build", timeout=300)
            yield shop
        finally:
            down(shop)


def history(shop: Project) -> list[dict[str, object]]:
    found = shop.json("history", ENV, "-n", "1")
    assert isinstance(found, list)
    return found


def only_api(release: str, shop: Project) -> list[str]:
    """`deploy` arguments that change the api to `release` and leave the web as it runs
    (its newest build may carry another test's faults.json)."""
    (web,) = {r for _, r, state in placement(shop, "web").values() if state == "serving"}
    return ["-r", f"api={release}", "-r", f"web={web}"]


def serving(shop: Project) -> str:
    release = get_json(fleet_url(shop))["release"]
    assert isinstance(release, str)
    return release


def test_rolling_host_batches_replace_their_hosts_instances_together_without_a_failed_request(
    fleet: Project,
) -> None:
    set_strategy(fleet, {"type": "rolling", "batch": "50%"})  # 1.5 of 3 hosts: 2 a batch
    old_hosts = {n: host for n, (host, _, state) in placement(fleet).items() if state == "serving"}
    change_api(fleet, f"batches {time.time()}")
    new = build(fleet)["api"]
    with traffic(fleet_url(fleet), clients=4, count_bodies=True) as load:
        fleet.run("deploy", ENV, *only_api(new, fleet), timeout=300)
        result = load.stop()
    assert result.failures == 0, result.summary()
    assert result.requests > 500, result.summary()
    assert new in releases_seen(result)

    # Every host runs one api instance of the new release.
    after = placement(fleet)
    assert sorted(host for host, _, _ in after.values()) == HOSTS
    assert {(release, state) for _, release, state in after.values()} == {(new, "serving")}

    # The plan replaced the api two hosts, then one: each batch started its hosts' new
    # instances together, then stopped the old instances of those same hosts.
    (record,) = history(fleet)
    explained = json.loads(fleet.run("explain", str(record["id"]), "--json").stdout)
    api_steps = [
        s["description"]
        for s in explained["steps"]
        if "(api " in s["description"] or s["description"].startswith("stop ")
    ]
    starts = [d.rsplit(" on ", 1)[-1] for d in api_steps if d.startswith("start ")]
    stops = [
        sorted(old_hosts[n] for n in d.removeprefix("stop ").split(", ") if n in old_hosts)
        for d in api_steps
        if d.startswith("stop ")
    ]
    assert starts == ["host1, host2", "host3"], api_steps
    assert [s for s in stops if s] == [["host1", "host2"], ["host3"]], api_steps


def test_canary_across_hosts_gets_its_exact_share_is_promoted_and_rolled_back_warm(
    fleet: Project,
) -> None:
    set_strategy(
        fleet,
        {
            "type": "canary",
            "steps": [{"set_weight": 25}, {"pause": {}}, {"analysis": "quick"}],
            "rollback_window": "10m",
        },
        {
            "quick": {
                "interval": "500ms",
                "duration": "4s",
                "max_duration": "40s",
                "min_requests": 50,
                "thresholds": ["error_rate < 2%", "p95 < 500ms"],
            }
        },
    )
    stable = serving(fleet)
    before = {n: p for n, p in placement(fleet).items() if p[2] == "serving"}
    change_api(fleet, f"canary {time.time()}")
    canary = build(fleet)["api"]

    paused = fleet.run("deploy", ENV, *only_api(canary, fleet), "--json", check=False, timeout=300)
    assert paused.returncode == 3, paused.stderr
    # The router weights the remote backends so that the canary's one instance gets
    # 25% of the requests, the stable release's three the rest.
    with traffic(fleet_url(fleet), clients=4, count_bodies=True) as load:
        time.sleep(5)
        result = load.stop()
    seen = releases_seen(result)
    share = 100 * seen[canary] / sum(seen.values())
    assert sum(seen.values()) > 400, result.summary()
    assert abs(share - 25) <= 4, (share, seen)
    assert result.failures == 0, result.summary()

    # The analysis reads the router's counters of the remote instances, and passes.
    with traffic(fleet_url(fleet), clients=4) as load:
        promoted = fleet.run("promote", ENV, "--json", timeout=300)
        result = load.stop()
    assert json.loads(promoted.stdout)["status"] == "succeeded"
    assert result.failures == 0, result.summary()
    (record,) = history(fleet)
    explained = json.loads(fleet.run("explain", str(record["id"]), "--json").stdout)
    (run,) = explained["analyses"]
    assert run["verdict"]["decision"] == "PASS"
    measured = json.dumps(run)
    assert "canary" in measured and "stable" in measured

    # The stable instances stayed warm on their hosts.
    after = placement(fleet)
    warm = {n: host for n, (host, release, state) in after.items() if state == "warm"}
    assert warm == {n: host for n, (host, _, _) in before.items()}
    new = [(host, release) for host, release, state in after.values() if state == "serving"]
    assert sorted(new) == [(h, canary) for h in HOSTS]

    # A rollback inside the window flips the traffic back to them: nothing starts.
    with traffic(fleet_url(fleet), clients=4) as load:
        rolled = fleet.run("rollback", ENV, "--json", timeout=300)
        result = load.stop()
    assert json.loads(rolled.stdout)["status"] == "succeeded"
    assert result.failures == 0, result.summary()
    back = placement(fleet)
    assert {n: (h, r) for n, (h, r, s) in back.items() if s == "serving"} == {
        n: (h, r) for n, (h, r, _) in before.items()
    }
    assert Counter(s for _, r, s in back.values() if r == canary) == Counter({"warm": 3})
    assert serving(fleet) == stable


def test_blue_green_across_hosts_previews_then_switches_and_keeps_the_old_set_warm(
    fleet: Project,
) -> None:
    preview = f"127.0.0.1:{free_port()}"
    set_strategy(
        fleet,
        {"type": "blue_green", "preview": preview, "auto_promote": False},
    )
    stable = serving(fleet)
    before = {n: p for n, p in placement(fleet).items() if p[2] == "serving"}
    change_api(fleet, f"blue-green {time.time()}")
    green = build(fleet)["api"]

    paused = fleet.run("deploy", ENV, *only_api(green, fleet), "--json", check=False, timeout=300)
    assert paused.returncode == 3, paused.stderr
    # The whole new set runs on the hosts, served on the preview only.
    assert get_json(f"http://{preview}/api/version")["release"] == green
    assert serving(fleet) == stable
    with traffic(fleet_url(fleet), clients=4, count_bodies=True) as load:
        promoted = fleet.run("promote", ENV, "--json", timeout=300)
        result = load.stop()
    assert json.loads(promoted.stdout)["status"] == "succeeded"
    assert result.failures == 0, result.summary()
    assert serving(fleet) == green
    after = placement(fleet)
    new = sorted((h, r) for h, r, s in after.values() if s == "serving")
    assert new == [(h, green) for h in HOSTS]
    warm = {n: (h, r) for n, (h, r, s) in after.items() if s == "warm"}
    assert warm == {n: (h, r) for n, (h, r, _) in before.items()}


def test_a_bad_canary_across_hosts_is_aborted_by_its_analysis(fleet: Project) -> None:
    set_strategy(
        fleet,
        {
            "type": "canary",
            "analysis": "background",
            # A pause the deploy cannot wait out within the run's timeout: only the
            # analysis can end it (an abort), however loaded the machine is.
            "steps": [{"set_weight": 25}, {"pause": "10m"}],
        },
        {"background": {"interval": "500ms", "duration": "5m", "min_requests": 50}},
    )
    stable = serving(fleet)
    before = {n: (h, r) for n, (h, r, s) in placement(fleet).items() if s == "serving"}
    fleet.write_faults(error_rate=0.2)
    try:
        change_api(fleet, f"bad {time.time()}")
        bad = build(fleet)["api"]
        with traffic(fleet_url(fleet), clients=4) as load:
            aborted = fleet.run("deploy", ENV, *only_api(bad, fleet), check=False, timeout=300)
            result = load.stop()
    finally:
        fleet.clear_faults()
    assert aborted.returncode == 1, aborted.stdout + aborted.stderr
    assert "was aborted" in aborted.stderr and "background analysis" in aborted.stderr
    (record,) = history(fleet)
    assert record["status"] == "aborted"
    assert serving(fleet) == stable
    after = placement(fleet)
    assert {n: (h, r) for n, (h, r, s) in after.items()} == before  # the canary is gone
    # Only the canary's own errors reached clients, and only while it ran.
    assert result.failures / max(1, result.requests) < 0.05, result.summary()
