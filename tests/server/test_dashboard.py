"""The dashboard of `conveyor server` on the real app (FastAPI's TestClient): logging
in, what each page shows, the buttons each role sees and what they do, CSRF, the
masking of secrets, and the live stream of a deployment's journal."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from conveyor.redaction import forget_secrets, register_secrets
from conveyor.store.records import (
    AWAITING_APPROVAL,
    RUNNING,
    SUCCEEDED,
    MeasurementRecordRow,
)
from tests.server.conftest import DEPLOYMENT, NOW, Api

WAITING = "20261206-130000-beef"  # a production deployment that waits for approval


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', html)
    assert found, html
    return found.group(1)


def log_in(client: TestClient, token: str, target: str = "/environments") -> TestClient:
    form = client.get("/login")
    answer = client.post(
        "/login",
        data={"csrf": csrf_of(form.text), "token": token, "next": target},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


def session(api: Api, kind: str) -> TestClient:
    """A browser of its own, logged in with the token of `kind`."""
    client = TestClient(api.client.app)
    return log_in(client, api.tokens[kind])


def waiting(api: Api, user: str = "deployer") -> None:
    """A production deployment by `user`, waiting for one approval."""
    done = api.store.get_deployment(DEPLOYMENT)
    assert done is not None
    api.store.create_deployment(
        replace(
            done,
            id=WAITING,
            environment="production",
            status=AWAITING_APPROVAL,
            user=user,
            finished_at=None,
        )
    )


def test_every_page_needs_a_session_and_sends_the_browser_to_log_in(api: Api) -> None:
    for path in (
        "/",
        "/environments",
        "/environments/staging",
        f"/deployments/{DEPLOYMENT}",
        "/pipeline",
        "/dora",
        "/alerts",
    ):
        answer = api.client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login"), path
    answer = api.client.get("/environments", follow_redirects=True)
    assert answer.status_code == 200 and 'id="token"' in answer.text
    assert "/environments" in answer.text  # where it goes after logging in
    status = api.client.get(f"/api/deployments/{DEPLOYMENT}/events").status_code
    assert status == 401


def test_logging_in_sets_a_strict_httponly_cookie_and_refuses_bad_tokens(api: Api) -> None:
    client = api.client
    form = client.get("/login")
    csrf = csrf_of(form.text)
    for kind in ("bad", "revoked", "expired", "none"):
        refused = client.post("/login", data={"csrf": csrf, "token": api.tokens[kind]})
        assert refused.status_code == 401 and "not valid" in refused.text, kind
        assert "conveyor_session" not in refused.headers.get("set-cookie", "")
    forged = client.post("/login", data={"csrf": "guess", "token": api.tokens["viewer"]})
    assert forged.status_code == 403 and "expired" in forged.text
    form = client.get("/login")
    answer = client.post(
        "/login",
        data={"csrf": csrf_of(form.text), "token": api.tokens["viewer"], "next": "//evil.example"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/environments"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "conveyor_session" in c)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert api.tokens["viewer"] not in cookie  # a random session id, not the token
    behind_tls = TestClient(api.client.app)
    form = behind_tls.get("/login")
    answer = behind_tls.post(
        "/login",
        data={"csrf": csrf_of(form.text), "token": api.tokens["viewer"]},
        headers={"X-Forwarded-Proto": "https"},
        follow_redirects=False,
    )
    assert "Secure" in answer.headers["set-cookie"]


def test_a_revoked_token_ends_its_sessions_and_logging_out_ends_one(api: Api) -> None:
    viewer = session(api, "viewer")
    assert viewer.get("/environments").status_code == 200
    api.store.update_token("viewer", revoked_at=datetime.now(UTC))
    assert viewer.get("/environments", follow_redirects=False).status_code == 303
    admin = session(api, "admin")
    page = admin.get("/environments")
    assert "admin (admin)" in page.text
    admin.post("/logout", data={"csrf": csrf_of(page.text)})
    assert admin.get("/environments", follow_redirects=False).status_code == 303


def test_the_environments_history_and_deployment_pages_show_what_a_user_needs(api: Api) -> None:
    viewer = session(api, "viewer")
    page = viewer.get("/environments").text
    assert "api: what runs where" in page
    assert 'id="env-staging"' in page and 'id="env-production"' in page
    assert "web" in page and "never deployed" in page  # production
    assert DEPLOYMENT in page  # staging's last deployment
    assert page.count('data-service="web"') == 2
    history = viewer.get("/environments/staging").text
    assert f'href="/deployments/{DEPLOYMENT}"' in history
    assert "succeeded" in history and "first" in history and "tester@example.com" in history
    deployment = viewer.get(f"/deployments/{DEPLOYMENT}")
    assert deployment.headers["content-security-policy"].startswith("default-src 'none'")
    assert 'id="start"' in deployment.text and "succeeded after 60.0 s" in deployment.text
    assert "No analysis measured" in deployment.text
    assert 'id="buttons"' in deployment.text and "button-" not in deployment.text  # a viewer
    assert "Release history" in history and viewer.get("/environments/nowhere").status_code == 404
    assert viewer.get("/deployments/nope").status_code == 404
    assert "No pipeline run yet" in viewer.get("/pipeline").text
    dora = viewer.get("/dora?since=7d").text
    assert "deployment frequency" in dora and "1 deployments" in dora
    assert viewer.get("/dora?since=soon").status_code == 400
    assert "No monitors configured." in viewer.get("/alerts").text


def test_a_limited_token_sees_only_its_environments(api: Api) -> None:
    prod = session(api, "other-environment")
    page = prod.get("/environments").text
    assert 'id="env-production"' in page and 'id="env-staging"' not in page
    refused = prod.get(f"/deployments/{DEPLOYMENT}")
    assert refused.status_code == 403 and "may not act in staging" in refused.text
    assert 'id="dora-staging"' not in prod.get("/dora").text


def test_the_timeline_and_the_chart_come_from_the_journal(api: Api) -> None:
    api.store.step_started(DEPLOYMENT, 1, "start", "start web r1")
    api.store.step_finished(DEPLOYMENT, 1, "done")
    api.store.add_event("pause", "paused by someone", "staging", DEPLOYMENT)
    start = datetime.now(UTC).timestamp()
    for seq in range(4):
        canary = {
            "requests": 100 * seq,
            "errors": 5 * seq,
            "latency_ms": {"offset": 3, "counts": [100 * seq]},
        }
        stable = {"requests": 100 * seq, "errors": 0}
        api.store.add_measurement(
            MeasurementRecordRow(
                deployment_id=DEPLOYMENT,
                step_index=2,
                analysis="quick",
                run=1,
                seq=seq,
                time=datetime.now(UTC),
                data={
                    "seq": seq,
                    "time": start + seq,
                    "releases": {
                        "canary": canary,
                        "baseline": {"requests": 0, "errors": 0},
                        "stable": stable,
                    },
                    "verdict": {
                        "decision": "FAIL" if seq == 3 else "CONTINUE",
                        "message": "error rate above stable",
                        "checks": [
                            {
                                "name": "error_rate_vs_stable",
                                "statistic": "e_value",
                                "value": 4.0**seq,
                                "threshold": {"against": "stable", "reject_at": 40.0},
                            },
                        ],
                    },
                },
            )
        )
    page = session(api, "viewer").get(f"/deployments/{DEPLOYMENT}").text
    assert 'id="step-1"' in page and "step 1: start web r1" in page
    assert "paused by someone" in page
    assert "analysis quick (step 2, run 1): FAIL" in page and "4 measurements" in page
    svg = re.search(r"<svg.*?</svg>", page, re.S)
    assert svg and 'data-points="4"' in svg.group(0) and 'data-decision="FAIL"' in svg.group(0)
    for series in (
        "error_rate:canary",
        "error_rate:stable",
        "e_value:error_rate_vs_stable",
        "threshold:error_rate_vs_stable",
    ):
        assert f'data-series="{series}"' in svg.group(0), series
    assert "fails at 40" in svg.group(0)


def test_buttons_follow_the_role_and_the_four_eyes_rule_holds(api: Api) -> None:
    waiting(api, user="admin")
    page = f"/deployments/{WAITING}"
    for kind in ("viewer", "deployer"):
        html = session(api, kind).get(page).text
        assert "awaiting approval" in html and "button-approve" not in html, kind
        assert session(api, kind).get(f"{page}/confirm/approve").status_code == 403
    admin = session(api, "admin")
    assert 'id="button-approve"' in admin.get(page).text
    confirm = admin.get(f"{page}/confirm/approve")
    assert confirm.status_code == 200 and "Approve deployment" in confirm.text
    refused = admin.post(f"{page}/approve", data={"csrf": csrf_of(confirm.text)})
    assert refused.status_code == 200 and "approve refused" in refused.text  # its own
    assert api.store.list_approvals(WAITING) == []

    approver = session(api, "approver")
    html = approver.get(page).text
    assert 'id="button-approve"' in html and 'id="button-reject"' in html
    assert "button-rollback" not in html and "button-abort" not in html
    confirm = approver.get(f"{page}/confirm/approve")
    done = approver.post(
        f"{page}/approve",
        data={"csrf": csrf_of(confirm.text), "message": "ship it"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == page
    assert "approve: approved" in approver.get(page).text  # said once, on the next page
    decisions = api.store.list_approvals(WAITING)
    assert [(d.user, d.approve, d.message) for d in decisions] == [("approver", True, "ship it")]
    audit = [(a.token, a.method, a.path, a.status) for a in api.store.list_audit()]
    assert ("approver", "POST", f"{page}/approve", 303) in audit
    refusal = next(a for a in api.store.list_audit() if a.token == "admin")
    assert refusal.path == f"{page}/approve" and "prevent_self_approval" in refusal.outcome


def test_a_post_without_the_sessions_csrf_secret_changes_nothing(api: Api) -> None:
    waiting(api)
    approver = session(api, "approver")
    other = session(api, "admin")
    stolen = csrf_of(other.get("/environments").text)
    for form in ({}, {"csrf": ""}, {"csrf": stolen}):
        answer = approver.post(f"/deployments/{WAITING}/approve", data=form)
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert api.store.list_approvals(WAITING) == []
    # a state that does not offer the button refuses it, whatever the role
    rollback = approver.get(f"/deployments/{WAITING}/confirm/rollback")
    assert rollback.status_code == 403


def test_rollback_goes_through_the_api_and_says_why_it_was_refused(api: Api) -> None:
    deployer = session(api, "deployer")
    page = deployer.get(f"/deployments/{DEPLOYMENT}").text
    assert 'id="button-rollback"' in page and "button-approve" not in page
    confirm = deployer.get(f"/deployments/{DEPLOYMENT}/confirm/rollback").text
    after = deployer.post(f"/deployments/{DEPLOYMENT}/rollback", data={"csrf": csrf_of(confirm)})
    assert after.status_code == 200 and "rollback refused" in after.text  # nothing before r1
    assert api.store.list_audit()[0].path == f"/deployments/{DEPLOYMENT}/rollback"


def test_secrets_are_masked_on_every_page_and_in_the_stream(api: Api) -> None:
    register_secrets(["hunter2-very-secret"])
    try:
        api.store.update_deployment(DEPLOYMENT, error="db password hunter2-very-secret refused")
        api.store.add_event("failed", "hunter2-very-secret in a message", "staging", DEPLOYMENT)
        viewer = session(api, "viewer")
        for path in (
            "/environments",
            "/environments/staging",
            f"/deployments/{DEPLOYMENT}",
            f"/api/deployments/{DEPLOYMENT}/events",
        ):
            answer = viewer.get(path)
            assert answer.status_code == 200, path
            assert "hunter2-very-secret" not in answer.text, path
        assert "db password" in viewer.get(f"/deployments/{DEPLOYMENT}").text
    finally:
        forget_secrets()


def test_the_stream_sends_journal_writes_as_they_happen_then_ends(api: Api) -> None:
    running = "20261206-140000-cafe"
    done = api.store.get_deployment(DEPLOYMENT)
    assert done is not None
    api.store.create_deployment(replace(done, id=running, status=RUNNING, finished_at=None))
    seen: list[tuple[str, dict[str, object]]] = []
    first = threading.Event()

    def read() -> None:
        headers = {"Authorization": f"Bearer {api.tokens['viewer']}"}
        with api.client.stream("GET", f"/api/deployments/{running}/events", headers=headers) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            event = ""
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    seen.append((event, json.loads(line.removeprefix("data: "))))
                    if event == "summary":
                        first.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first.wait(30)  # the stream is open and has sent what there was
    api.store.step_started(running, 1, "start", "start web r2")
    api.store.update_deployment(running, status=SUCCEEDED, finished=True)
    reader.join(30)
    assert not reader.is_alive()
    kinds = [event for event, _ in seen]
    keys = [data.get("key") for event, data in seen if event == "entry"]
    assert keys[0] == "start" and "step-1" in keys and keys[-1] == "end"
    assert kinds[-1] == "end" and seen[-1][1] == {"status": "succeeded"}
    step = next(data for event, data in seen if data.get("key") == "step-1")
    assert "start web r2" in str(step["html"])
    # a token that may not see the environment may not follow it either
    headers = {"Authorization": f"Bearer {api.tokens['other-environment']}"}
    assert api.client.get(f"/api/deployments/{running}/events", headers=headers).status_code == 403


@pytest.mark.parametrize("name", ["dashboard.css", "dashboard.js"])
def test_the_pages_own_files_are_served(api: Api, name: str) -> None:
    answer = api.client.get(f"/static/{name}")
    assert answer.status_code == 200 and len(answer.content) < 10_000
    assert api.client.get("/static/../app.py").status_code == 404


def test_the_alerts_page_shows_each_rule_and_probe_where_its_agent_left_it(api: Api) -> None:
    from conveyor.store.records import AlertRecord

    config = api.root / "conveyor.yml"
    config.write_text(
        config.read_text().replace(
            "  staging:\n",
            "  staging:\n"
            "    monitors:\n"
            "      rules: {errors: {alert: 'error_rate > 5% for 1m'}}\n"
            "      probes: {up: {path: /health}}\n",
        )
    )
    api.store.put_alert(
        AlertRecord(
            environment="staging",
            name="errors",
            kind="rule",
            state="firing",
            updated_at=NOW,
            expression="error_rate > 5% for 1m",
            since=datetime(2026, 12, 6, 21, 45, 2, tzinfo=UTC),
            detail="error_rate 7.5% of 400 requests",
        )
    )
    page = session(api, "viewer").get("/alerts").text
    assert "No monitors configured." not in page
    rows = re.findall(r'<tr class="s-([^"]+)"><td>(\w+)</td><td><code>([^<]*)</code>', page)
    assert rows == [
        ("firing", "staging", "errors: error_rate &gt; 5% for 1m"),
        ("not run yet", "staging", "up"),
    ]
    assert "2026-12-06 21:45:02 UTC" in page and "error_rate 7.5% of 400 requests" in page
    # a token for production only sees none of staging's
    assert "No monitors configured." in session(api, "other-environment").get("/alerts").text
