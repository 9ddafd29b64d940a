"""End to end: `conveyor shutdown` stops every process Conveyor started for the project
(instances, the router, supervisord), and the next deploy brings it all back."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from conveyor.targets.supervisor import pid_alive as alive
from tests.e2e.test_shop import build, get_json, status, url
from tests.support.project import Project

pytestmark = pytest.mark.slow


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def platform_pids(shop: Project) -> dict[str, int]:
    """supervisord's pid and those of the programs under it, read from the machine."""
    from conveyor.paths import Paths
    from conveyor.targets.supervisor import Supervisor

    supervisor = Supervisor(Paths(shop.home))
    pids = {p.status.name: p.status.pid for p in supervisor.all_programs() if p.status.pid}
    pid = supervisor.supervisord_pid()
    assert pid is not None
    return {**pids, "supervisord": pid}


@pytest.mark.parametrize("router", ["caddy", "haproxy"])
def test_shutdown_stops_everything_and_deploy_brings_it_back(shop: Project, router: str) -> None:
    shop.env["SHOP_STAGING_ROUTER"] = router
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    assert get_json(url(shop))["release"] == v1
    instances = [i for s in status(shop)["services"] for i in s["instances"]]
    ports = [i["address"] for i in instances]
    pids = platform_pids(shop)
    assert {i["name"] for i in instances} <= set(pids)
    assert f"conveyor-{router}" in pids and all(alive(p) for p in pids.values())

    asked = shop.run("shutdown", check=False)  # no terminal to ask on, no --yes
    assert asked.returncode == 1 and "needs confirmation" in asked.stderr
    assert "--yes" in asked.stderr and "Traceback" not in asked.stderr
    shop.run("lock", "acquire", "staging", "-m", "investigating")
    locked = shop.run("shutdown", "--yes", check=False)
    assert locked.returncode == 1 and "staging is locked by tester@example.com" in locked.stderr
    assert all(alive(p) for p in pids.values())  # refused: nothing was stopped
    shop.run("lock", "release", "staging")

    done = shop.run("shutdown", "--yes", "--json")
    report: dict[str, Any] = json.loads(done.stdout)
    stopped = {s["name"]: s for s in report["stopped"]}
    assert {n: s["pid"] for n, s in stopped.items()} == pids
    assert all(s["gone"] for s in stopped.values())
    assert stopped[f"conveyor-{router}"]["kind"] == "router"
    assert stopped["supervisord"]["kind"] == "supervisord"
    assert {stopped[i["name"]]["kind"] for i in instances} == {"instance"}
    assert not any(alive(p) for p in pids.values())
    assert not any(listening(a) for a in [shop.env["SHOP_STAGING_LISTEN"], *ports])
    down = shop.json("history", "staging", "-n", "1")
    assert isinstance(down, list) and down[0]["id"] == report["down"]["staging"]
    assert down[0]["kind"] == "down" and down[0]["reason"] == "conveyor shutdown"

    shop.run("deploy", "staging")  # starts the platform again
    assert get_json(url(shop))["release"] == v1
    again = platform_pids(shop)
    assert again["supervisord"] != pids["supervisord"]

    human = shop.run("shutdown", "--yes").stdout
    assert f"stopped router conveyor-{router} (pid {again[f'conveyor-{router}']})" in human
    assert f"stopped supervisord supervisord (pid {again['supervisord']})" in human
    assert "staging is down (deployment" in human
    deadline = time.monotonic() + 5
    while listening(shop.env["SHOP_STAGING_LISTEN"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not listening(shop.env["SHOP_STAGING_LISTEN"])
    nothing = shop.run("shutdown", "--yes").stdout
    assert "nothing of shop runs on this machine" in nothing
