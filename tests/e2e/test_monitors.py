"""End to end: monitors in the agent, on the shop, through the real router.

Staging runs blue-green (the previous release stays warm for the rollback window)
with an alert rule on the api's error rate and a command probe. A release that fails
half of its requests is deployed under load: the rule fires from the router's own
counters, a local HTTP receiver gets `alert_firing`, `on_fire: rollback` flips the
traffic back to the warm release (recorded as a rollback by "monitor errors"), the
errors stop and the alert resolves (`alert_resolved`). The probe fires while a flag
file exists; the agent is killed (supervisord starts it again) and the firing alert is
not announced twice, then resolves under the new agent. `conveyor dora` counts the
bad deployment as a failure.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from bench.loadgen import Load
from tests.e2e.test_shop import url
from tests.support.project import Project, make_project
from tests.support.receiver import Receiver, receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
T = TypeVar("T")


@pytest.fixture(scope="module")
def http() -> Iterator[Receiver]:
    with receiver() as server:
        yield server


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, http: Receiver) -> Iterator[Project]:
    project = make_project(tmp_path_factory.mktemp("monitors"))
    project.env["SHOP_API_REPLICAS"] = "1"
    flag = project.root.parent / "gate-closed"
    path = project.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    config["services"]["web"]["replicas"] = 1
    staging = config["environments"]["staging"]
    staging["strategy"] = {"type": "blue_green", "rollback_window": "5m"}
    staging["monitors"] = {
        "interval": "1s",
        "rules": {
            "errors": {
                "alert": "error_rate > 20% for 2s",
                "service": "api",
                "window": "2s",
                "min_requests": 5,
                "on_fire": "rollback",
            },
        },
        "probes": {
            "gate": {
                "type": "command",
                # each run leaves a line: the test sees that the agent evaluated it
                "command": f"echo run >> {flag}.runs; test ! -e {flag}",
                "interval": "1s",
            },
        },
    }
    config["notify"] = [
        {"webhook": {"url": f"{http.base}/alerts"}, "events": ["alert_firing", "alert_resolved"]}
    ]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit("monitors")
    try:
        deployed = project.run("deploy", "staging", "--build")
        assert "started the agent of staging (0 scheduled jobs, 2 monitors)" in deployed.stderr
        yield project
    finally:
        project.shutdown()


def alerts(http: Receiver, name: str) -> list[dict[str, Any]]:
    with http.lock:
        bodies = [r.json() for r in http.received if r.path == "/alerts"]
    return [b for b in bodies if b["alert"] == name]


def events_of(http: Receiver, name: str) -> list[str]:
    return [b["event"] for b in alerts(http, name)]


def environment(shop: Project) -> dict[str, Any]:
    report: Any = shop.json("status", "staging")
    return report["environments"][0]  # type: ignore[no-any-return]


def alert_state(shop: Project, name: str) -> dict[str, Any]:
    return next(a for a in environment(shop)["alerts"] if a["name"] == name)


def test_an_error_burst_fires_rolls_back_inside_the_window_and_resolves(
    shop: Project, http: Receiver
) -> None:
    wait_for(  # the agent lists its monitors as it starts
        "the monitors in conveyor status",
        lambda: (
            {a["name"]: a["state"] for a in environment(shop)["alerts"]}
            == {"errors": "ok", "gate": "ok"}
        ),
    )
    good_api = next(s for s in environment(shop)["services"] if s["name"] == "api")["release"]
    shop.write_faults(error_rate=0.5)
    with Load(url(shop), clients=2, rate=60.0):
        shop.run("deploy", "staging", "--build")
        fired = wait_for("alert_firing of errors", lambda: alerts(http, "errors"))
        assert fired[0]["event"] == "alert_firing"
        assert fired[0]["kind"] == "alert" and fired[0]["user"] == "monitor errors"
        assert fired[0]["reason"] == "error_rate > 20% for 2s"
        assert fired[0]["error"].startswith("error_rate ")
        wait_for(
            "the rollback by the monitor",
            lambda: any(
                d["kind"] == "rollback" and d["status"] == "succeeded" for d in history(shop)
            ),
        )
        wait_for(
            "alert_resolved of errors",
            lambda: events_of(http, "errors") == ["alert_firing", "alert_resolved"],
        )
    rollback = next(d for d in history(shop) if d["kind"] == "rollback")
    assert rollback["user"] == "monitor errors"
    assert rollback["reason"].startswith("alert errors fired: error_rate ")
    api = next(s for s in environment(shop)["services"] if s["name"] == "api")
    assert api["release"] == good_api  # the warm release serves again
    assert alert_state(shop, "errors")["state"] == "ok"
    # the deployment that set it off failed, for DORA
    dora: Any = shop.json("dora", "staging")
    assert dora["change_failure_rate"]["failed"] >= 1
    shop.clear_faults()


def history(shop: Project) -> list[dict[str, Any]]:
    data: Any = shop.json("history", "staging")
    return [d for d in data if "kind" in d]


def agent_pid(shop: Project) -> int | None:
    data: Any = shop.json("jobs", "staging")
    return data["agent"]["pid"] if data["agent"]["running"] else None


def test_a_firing_alert_survives_the_agents_restart_without_a_second_notification(
    shop: Project, http: Receiver
) -> None:
    flag = shop.root.parent / "gate-closed"
    runs = Path(f"{flag}.runs")
    flag.touch()
    wait_for("alert_firing of gate", lambda: events_of(http, "gate") == ["alert_firing"])
    assert alert_state(shop, "gate")["state"] == "firing"
    first = agent_pid(shop)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    second = wait_for("the agent started again", lambda: (agent_pid(shop) or first) != first)
    assert second != first
    seen = len(runs.read_text().splitlines())
    # the new agent has checked the gate (still closed) twice
    wait_for(
        "the probe run by the new agent", lambda: len(runs.read_text().splitlines()) > seen + 1
    )
    assert events_of(http, "gate") == ["alert_firing"]  # not announced again
    flag.unlink()
    wait_for(
        "alert_resolved of gate",
        lambda: events_of(http, "gate") == ["alert_firing", "alert_resolved"],
    )
    status = shop.run("status", "staging").stdout
    assert "probe gate" in status and "rule errors" in status
