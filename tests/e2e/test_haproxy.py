"""End to end on HAProxy: weights change over its runtime API, no reload, no retry needed."""

from __future__ import annotations

import pytest

from tests.e2e.test_shop import assert_serving, build, change_api, status, url
from tests.support.load import traffic
from tests.support.project import Project

pytestmark = pytest.mark.slow


def test_rolling_deploy_and_rollback_through_haproxy(shop: Project) -> None:
    shop.env["SHOP_STAGING_ROUTER"] = "haproxy"
    v1 = build(shop)
    shop.run("deploy", "staging")
    assert_serving(shop, v1["api"])
    change_api(shop, "v2")
    v2 = build(shop)

    with traffic(url(shop), clients=4, count_bodies=True) as load:
        shop.run("deploy", "staging")
        shop.run("rollback", "staging")
        result = load.stop()
    assert result.failures == 0, result.summary()
    # HAProxy changes weights without reloading: no connection is ever closed
    # unanswered, so not even the retry HTTP allows is needed.
    assert result.retried == 0, result.summary()
    assert result.requests > 100
    assert_serving(shop, v1["api"])
    assert {s["name"]: s["release"] for s in status(shop)["services"]} == {
        "api": v1["api"],
        "web": v2["web"],
    }
    shop.run("down", "staging", "--yes")
    assert all(not s["instances"] for s in status(shop)["services"])
