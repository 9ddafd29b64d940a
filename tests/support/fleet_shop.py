"""examples/shop's `fleet` environment on the test hosts (`scripts/testhosts`): for the
end-to-end tests and benchmarks of deploys across hosts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.project import Project, free_port, make_project
from tests.support.testhosts import Inventory

ENV = "fleet"


def fleet_shop(tmp: Path, hosts: Inventory, strategy: object) -> Project:
    """A copy of the shop whose `fleet` environment runs on `hosts` with `strategy`, its
    host keys trusted and its hosts set up (`conveyor setup`)."""
    shop = make_project(tmp)
    shop.env["SHOP_FLEET_LISTEN"] = f"127.0.0.1:{free_port()}"
    shop.env["CONVEYOR_TESTHOSTS"] = str(hosts.path)
    shop.configure(ENV, strategy)
    shop.run("hosts", "trust", ENV, "--yes")
    shop.run("setup", ENV, timeout=300)
    return shop


def fleet_url(shop: Project, path: str = "/api/version") -> str:
    return f"http://{shop.env['SHOP_FLEET_LISTEN']}{path}"


def set_strategy(shop: Project, strategy: object, analysis: object = None) -> None:
    shop.configure(ENV, strategy, analysis)


def instances(shop: Project, service: str = "api") -> list[dict[str, Any]]:
    """`status fleet --json`'s instances of `service` (name, host, release, state...)."""
    report = json.loads(shop.run("status", ENV, "--json").stdout)
    found = next(s for s in report["environments"][0]["services"] if s["name"] == service)
    return list(found["instances"])


def placement(shop: Project, service: str = "api") -> dict[str, tuple[str, str, str]]:
    """name -> (host, release, state) of the service's instances."""
    return {i["name"]: (i["host"], i["release"], i["state"]) for i in instances(shop, service)}


def down(shop: Project) -> None:
    """Stop the fleet's instances on every host, then everything on this machine."""
    try:
        shop.run("down", ENV, "--yes", check=False, timeout=300)
    finally:
        shop.shutdown()
