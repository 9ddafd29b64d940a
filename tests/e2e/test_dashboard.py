"""End to end, the dashboard in a real headless Chromium: log in with a token, watch a
canary deploy of the shop advance live (timeline entries arrive over server-sent events,
no reload), approve it as another user (the four-eyes rule refuses the deployer's own
approval), then roll it back from the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_shop import build, change_api, get_json, url
from tests.support.dashboard import Server, call, chromium, log_in, serve, wait_for
from tests.support.load import traffic
from tests.support.project import Project, make_project

pytestmark = pytest.mark.slow

CANARY = {
    "type": "canary",
    "steps": [{"set_weight": 50}, {"analysis": "quick"}],
    "rollback_window": "5m",
}
QUICK = {
    "quick": {
        "interval": "500ms",
        "duration": "3s",
        "max_duration": "30s",
        "min_requests": 20,
        "thresholds": ["error_rate < 5%"],
        "comparative": {"max_relative_increase": "20%"},
    }
}


def require_approval(shop: Project) -> None:
    """Staging needs one approval, never the deployer's own (the four-eyes rule)."""
    path = shop.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    config["environments"]["staging"]["approvals"] = {
        "required": 1,
        "prevent_self_approval": True,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    shop.commit("staging: approvals")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = make_project(tmp_path_factory.mktemp("dashboard"))
    try:
        yield project
    finally:
        project.shutdown()


def text(driver: Any, element_id: str) -> str:
    """The text of an element ("" when there is none), read at once in the page (the
    live stream may replace the element at any moment)."""
    found = driver.execute_script(
        "var e = document.getElementById(arguments[0]); return e ? e.innerText : ''", element_id
    )
    return str(found)


def entries(driver: Any) -> list[str]:
    """The keys of the timeline's entries, in order."""
    keys = driver.execute_script(
        "return Array.from(document.querySelectorAll('#timeline li')).map(e => e.id)"
    )
    return [str(key) for key in keys]


def submit(driver: Any, element_id: str) -> None:
    """Click a form's button and wait for the page the form leads to: the click returns
    once the form is sent, not once the next page is shown. The page before is marked,
    and the wait is for a loaded page without the mark (Chromium answers a question about
    an element of a page being replaced with an error, not always a stale element)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    def next_page_loaded() -> bool:
        try:
            return bool(
                driver.execute_script(
                    "return !window.formSent && document.readyState === 'complete'"
                )
            )
        except WebDriverException:  # between the two pages
            return False

    driver.execute_script("window.formSent = true")
    driver.find_element(By.ID, element_id).click()
    wait_for("the page after the form", next_page_loaded, 30)


def press(driver: Any, action: str) -> None:
    """A deployment page's button, then its confirmation page's."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, f"button-{action}").click()
    wait_for("the confirmation page", lambda: driver.find_elements(By.ID, "confirm"), 30)
    submit(driver, "confirm")


def test_watch_approve_and_roll_back_a_canary_in_the_browser(shop: Project, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    shop.configure("staging", CANARY, QUICK)
    require_approval(shop)
    change_api(shop, "v2")
    v2 = build(shop)["api"]

    with serve(shop) as server, chromium() as driver:
        lead = server.token("lead@example.com", "admin")
        alice = server.token("alice@example.com", "approver")
        # Without a session, every page sends the browser to the log-in form.
        driver.get(server.base + "/environments")
        assert "/login" in driver.current_url
        driver.find_element(By.ID, "token").send_keys("cvt_not-a-token")
        submit(driver, "login")
        assert "not valid" in text(driver, "login-error")

        log_in(driver, server.base, lead)
        assert "lead@example.com (admin)" in text(driver, "who")
        staging = text(driver, "env-staging")
        assert v1 in staging and "api" in staging and "serving" in staging

        status, started = call(server.base, "POST", "/api/environments/staging/deploy", lead, {})
        assert status in (200, 202), started
        deployment = started["id"]
        page = f"{server.base}/deployments/{deployment}"
        driver.get(page)
        wait_for("the live stream", lambda: text(driver, "live") == "live", 30)
        assert "awaiting approval" in text(driver, "summary")
        driver.execute_script("window.stayed = true")  # gone if the page reloads

        # The deployer's own approval does not count.
        press(driver, "approve")
        assert "approve refused" in text(driver, "flash") and "lead@example.com" in text(
            driver, "flash"
        )

        log_in(driver, server.base, alice, f"/deployments/{deployment}")
        assert not driver.find_elements(By.ID, "button-rollback")
        with traffic(url(shop), clients=2) as load:
            press(driver, "approve")
            assert "approved" in text(driver, "flash")
            wait_for("the live stream", lambda: text(driver, "live") == "live", 30)
            driver.execute_script("window.stayed = true")
            before = entries(driver)
            # Steps arrive while the page stays: the stream adds them in place.
            wait_for(
                "the canary's analysis on the timeline",
                lambda: any(e.startswith("analysis-") for e in entries(driver)),
                90,
            )
            wait_for("the end of the deployment", lambda: "end" in entries(driver), 90)
            result = load.stop()
        assert driver.execute_script("return window.stayed") is True
        assert len(entries(driver)) > len(before) + 3
        assert "succeeded" in text(driver, "summary") and text(driver, "live") == "finished"
        assert result.failures == 0, result.summary()
        chart = driver.find_element(By.CSS_SELECTOR, "#charts svg")
        assert int(chart.get_attribute("data-points")) >= 2
        assert chart.get_attribute("data-decision") == "PASS"
        assert get_json(url(shop))["release"] == v2

        # An approver may not roll back; the admin may, from the page, after confirming.
        log_in(driver, server.base, lead, f"/deployments/{deployment}")
        press(driver, "rollback")
        wait_for("the rollback's page", lambda: deployment not in driver.current_url, 60)
        wait_for("the rollback to end", lambda: text(driver, "live") == "finished", 60)
        assert "rollback" in text(driver, "summary") and "succeeded" in text(driver, "summary")
        assert get_json(url(shop))["release"] == v1

        audit = [(a["token"], a["path"], a["status"]) for a in audit_of(server, lead)]
        assert ("alice@example.com", f"/deployments/{deployment}/approve", 303) in audit
        assert ("lead@example.com", f"/deployments/{deployment}/rollback", 303) in audit


def audit_of(server: Server, token: str) -> list[dict[str, Any]]:
    status, audit = call(server.base, "GET", "/api/audit", token)
    assert status == 200, audit
    return list(audit)
