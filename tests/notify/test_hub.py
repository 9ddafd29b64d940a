"""The hub: which targets hear of what, retries, order per target, records, giving up."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.config import load_config
from conveyor.engine.runtime import Runtime
from conveyor.notify import hub
from conveyor.store.records import DeploymentRecord, ReleaseRecord
from tests.support.receiver import Receiver


def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notify: list[Any]) -> Runtime:
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hub, "BACKOFF_S", (0.01, 0.01, 0.01))
    config = {
        "project": "shop",
        "services": {"api": {"run": "python server.py"}},
        "environments": {
            "staging": {"listen": "127.0.0.1:18080"},
            "production": {"listen": "127.0.0.1:18081", "approvals": {"required": 1}},
        },
        "notify": notify,
    }
    path = tmp_path / "conveyor.yml"
    path.write_text(yaml.safe_dump(config))
    return Runtime.open(load_config(path, environ={}), "ana@example.com")


def deployment(number: int, environment: str = "staging", **changes: Any) -> DeploymentRecord:
    values: dict[str, Any] = {
        "id": f"d-{number}",
        "environment": environment,
        "kind": "deploy",
        "status": "running",
        "strategy": "rolling",
        "releases": {"api": f"r{number}"},
        "previous": {"api": f"r{number - 1}"},
        "user": "ana@example.com",
        "reason": None,
        "started_at": datetime.now(UTC),
        **changes,
    }
    return DeploymentRecord(**values)


async def publish(rt: Runtime, *events: tuple[str, DeploymentRecord]) -> None:
    for kind, record in events:
        rt.notifications.publish(kind, record)
    await rt.notifications.drain()


def test_filters_pick_the_events_and_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http: Receiver
) -> None:
    rt = runtime(
        tmp_path,
        monkeypatch,
        [
            {"webhook": {"url": f"{http.base}/all"}},
            {
                "webhook": {"url": f"{http.base}/prod-outcomes"},
                "events": ["succeeded", "rolled_back"],
                "environments": ["production"],
            },
        ],
    )
    asyncio.run(
        publish(
            rt,
            ("started", deployment(1)),
            ("succeeded", deployment(1, status="succeeded")),
            ("started", deployment(2, "production")),
            ("rolled_back", deployment(2, "production", status="rolled_back")),
        )
    )
    sent = [(r.path, r.json()["event"], r.json()["environment"]) for r in http.received]
    assert sorted(sent) == sorted(
        [
            ("/all", "started", "staging"),
            ("/all", "succeeded", "staging"),
            ("/all", "started", "production"),
            ("/all", "rolled_back", "production"),
            ("/prod-outcomes", "rolled_back", "production"),
        ]
    )
    production_start = next(r for r in http.received if r.json()["environment"] == "production")
    assert production_start.json()["approval_required"] is True


def test_a_failing_target_is_retried_then_recorded_and_others_still_get_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http: Receiver
) -> None:
    http.fail["/down"] = 502
    http.failures_left["/flaky"] = 2
    rt = runtime(
        tmp_path,
        monkeypatch,
        [
            {"webhook": {"url": f"{http.base}/down"}},
            {"webhook": {"url": f"{http.base}/flaky"}},
            {"webhook": {"url": f"{http.base}/fine"}},
        ],
    )
    asyncio.run(publish(rt, ("succeeded", deployment(1, status="succeeded"))))
    assert http.paths().count("/down") == 4 and http.paths().count("/flaky") == 3
    records = {(n.target, n.status, n.attempts) for n in rt.store.list_notifications("d-1")}
    endpoint = f"webhook {http.base}"
    # The three share a host: they are told apart by how they fared.
    assert records == {
        (endpoint, "failed", 4),
        (endpoint, "delivered", 3),
        (endpoint, "delivered", 1),
    }
    failed = next(n for n in rt.store.list_notifications("d-1") if n.status == "failed")
    assert (
        failed.error
        == f'POST {http.base}: HTTP 502: {{"message": "the receiver was told to fail"}}'
    )


def test_deliveries_to_one_target_keep_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http: Receiver
) -> None:
    """GitHub: the status of `succeeded` goes to the deployment `started` created,
    however slowly GitHub created it."""
    http.delay["/repos/acme/shop/deployments"] = 0.4
    rt = runtime(
        tmp_path,
        monkeypatch,
        [{"github": {"repository": "acme/shop", "token": "ghp_x", "api_url": http.base}}],
    )
    for number in (1, 2):
        rt.store.add_release(
            ReleaseRecord(
                f"r{number}", "api", "/nowhere", "d", "s", datetime.now(UTC), "ana", "c" * 40
            )
        )
    asyncio.run(
        publish(
            rt,
            ("started", deployment(1)),
            ("succeeded", deployment(1, status="succeeded")),
            ("started", deployment(2)),
            ("succeeded", deployment(2, status="succeeded")),
        )
    )
    assert [(r.path, (r.json().get("state"))) for r in http.received] == [
        ("/repos/acme/shop/deployments", None),
        ("/repos/acme/shop/deployments/101/statuses", "in_progress"),
        ("/repos/acme/shop/deployments/101/statuses", "success"),
        ("/repos/acme/shop/deployments", None),
        ("/repos/acme/shop/deployments/102/statuses", "in_progress"),
        ("/repos/acme/shop/deployments/102/statuses", "success"),
        ("/repos/acme/shop/deployments/101/statuses", "inactive"),
    ]


def test_a_target_that_hangs_is_given_up_and_that_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http: Receiver
) -> None:
    http.delay["/slow"] = 60.0  # until the test ends: the drain's timeout must cut it short
    rt = runtime(tmp_path, monkeypatch, [{"webhook": {"url": f"{http.base}/slow"}}])

    async def go() -> float:
        rt.notifications.publish("started", deployment(1))
        rt.notifications.publish("succeeded", deployment(1, status="succeeded"))
        began = time.monotonic()
        await rt.notifications.drain(timeout=0.3)
        return time.monotonic() - began

    assert asyncio.run(go()) < 15  # given up after 0.3 s, not delivered after a minute
    records = rt.store.list_notifications("d-1")
    assert sorted((n.event, n.status) for n in records) == [
        ("started", "failed"),
        ("succeeded", "failed"),
    ]
    assert all(n.error and n.error.startswith("given up: still not delivered") for n in records)
