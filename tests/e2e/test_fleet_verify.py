"""End to end: the check after traffic (`verify:`) on the SSH fleet: the shop's `fleet`
environment on 2 test hosts, blue-green behind the router of this machine. A release
whose endpoints start failing after a few requests fails its bake, and the traffic flips
back to the previous release's warm instances on both hosts in one weight change."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.test_shop import build, change_api, get_json
from tests.e2e.test_verify import SMOKE, after_verify, configure, explain
from tests.support.fleet_shop import ENV, down, fleet_shop, fleet_url, placement
from tests.support.testhosts import hosts_up

pytestmark = pytest.mark.slow

BLUE_GREEN = {"type": "blue_green", "rollback_window": "5m"}


def test_a_failing_bake_flips_back_to_the_warm_instances_on_every_host(tmp_path: Path) -> None:
    with hosts_up(2, tmp_path / "hosts") as hosts:
        shop = fleet_shop(tmp_path / "fleet", hosts, BLUE_GREEN)
        try:
            configure(
                shop,
                {"bake": "4s", "interval": "200ms", "smoke": SMOKE},
                BLUE_GREEN,
                environment=ENV,
            )
            shop.run("deploy", ENV, "--build", timeout=300)
            v1 = get_json(fleet_url(shop))["release"]
            before = placement(shop)
            assert {host for host, _, _ in before.values()} == {"host1", "host2"}

            shop.write_faults(fail_after_requests=3)  # its endpoints fail after 3 requests
            change_api(shop, f"bad {time.time()}")
            v2 = build(shop)["api"]
            failed = shop.run("deploy", ENV, check=False, timeout=300)
            assert failed.returncode == 1, failed.stdout + failed.stderr

            record = shop.json("history", ENV, "-n", "1")
            assert isinstance(record, list)
            (last,) = record
            assert last["status"] == "rolled_back" and last["releases"]["api"] == v2
            assert last["error"].startswith("verify failed "), last["error"]
            assert "smoke test version" in last["error"] and "-> 500" in last["error"]
            # The same v1 instances serve again, on both hosts: nothing was started.
            assert placement(shop) == before
            assert get_json(fleet_url(shop))["release"] == v1
            back = after_verify(explain(shop, str(last["id"])))
            assert not [d for d in back if d.startswith("start ")], back
            assert len([d for d in back if d.startswith("route api traffic")]) == 1, back
        finally:
            down(shop)
