"""Every endpoint of `conveyor server` against every kind of caller, on the real app.

A role that may do something gets past the checks to the engine's own answer (a
project without releases: 400 for a deploy, 409 where no deployment is unfinished
or waits for approval); one that may not gets 403; a missing, unknown, revoked or
expired token gets 401 everywhere under /api/.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from conveyor.redaction import forget_secrets, register_secrets
from conveyor.store.records import AWAITING_APPROVAL
from tests.server.conftest import DEPLOYMENT, Api

STAGING = "/api/environments/staging"
D = f"/api/deployments/{DEPLOYMENT}"
ROLES = ("viewer", "deployer", "approver", "admin", "other-environment")
REFUSED = ("none", "bad", "revoked", "expired")

# (method, path, body): the expected status of viewer, deployer, approver, admin, and an
# admin token limited to production.
TABLE: list[tuple[str, str, object, tuple[int, int, int, int, int]]] = [
    ("GET", "/api/environments", None, (200, 200, 200, 200, 200)),
    ("GET", STAGING, None, (200, 200, 200, 200, 403)),
    ("GET", f"{STAGING}/deployments", None, (200, 200, 200, 200, 403)),
    ("GET", f"{STAGING}/dora", None, (200, 200, 200, 200, 403)),
    ("GET", D, None, (200, 200, 200, 200, 403)),
    ("GET", f"{D}/events", None, (200, 200, 200, 200, 403)),
    ("GET", "/api/audit", None, (403, 403, 403, 200, 403)),
    ("GET", "/metrics", None, (200, 200, 200, 200, 200)),
    ("POST", f"{STAGING}/deploy", {"releases": {}}, (403, 400, 403, 400, 403)),
    ("POST", f"{STAGING}/rollback", {"to": ["web=nope"]}, (403, 400, 403, 400, 403)),
    ("POST", f"{STAGING}/promote", {"full": False}, (403, 409, 403, 409, 403)),
    ("POST", f"{STAGING}/pause", None, (403, 409, 403, 409, 403)),
    ("POST", f"{STAGING}/resume", None, (403, 409, 403, 409, 403)),
    ("POST", f"{STAGING}/abort", {"message": "stop"}, (403, 409, 403, 409, 403)),
    ("POST", f"{D}/approve", {"message": "ok"}, (403, 403, 409, 409, 403)),
    ("POST", f"{D}/reject", None, (403, 403, 409, 409, 403)),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), TABLE)
def test_every_endpoint_for_every_caller(
    api: Api, method: str, path: str, body: object, expected: tuple[int, ...]
) -> None:
    got = {kind: api.call(method, path, kind, body)[0] for kind in (*ROLES, *REFUSED)}
    want = {**dict(zip(ROLES, expected, strict=True)), **dict.fromkeys(REFUSED, 401)}
    assert got == want
    status, answer = api.call(method, path, "viewer", body)
    if status >= 400:  # every error is {error, hint}, with the reason
        assert isinstance(answer, dict) and set(answer) == {"error", "hint"}
        assert answer["error"]


# The dashboard's pages, in a browser logged in with each kind of token (one that cannot
# log in is sent to the log-in page: 303). The deployment is a finished one of staging,
# the latest: a deployer may roll it back.
PAGES: list[tuple[str, tuple[int, int, int, int, int]]] = [
    ("/environments", (200, 200, 200, 200, 200)),
    ("/environments/staging", (200, 200, 200, 200, 403)),
    (f"/deployments/{DEPLOYMENT}", (200, 200, 200, 200, 403)),
    (f"/deployments/{DEPLOYMENT}/confirm/rollback", (403, 200, 403, 200, 403)),
    (f"/deployments/{DEPLOYMENT}/confirm/approve", (403, 403, 403, 403, 403)),
    ("/pipeline", (200, 200, 200, 200, 200)),
    ("/dora", (200, 200, 200, 200, 200)),
    ("/alerts", (200, 200, 200, 200, 200)),
]


def browser(api: Api, kind: str) -> TestClient:
    """A client that logged in on the dashboard with the token of `kind` (or tried to)."""
    client = TestClient(api.client.app)
    form = client.get("/login").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    client.post("/login", data={"csrf": csrf, "token": api.tokens[kind]})
    return client


def test_every_page_for_every_caller(api: Api) -> None:
    browsers = {kind: browser(api, kind) for kind in (*ROLES, *REFUSED)}
    for path, expected in PAGES:
        got = {k: b.get(path, follow_redirects=False).status_code for k, b in browsers.items()}
        want = {**dict(zip(ROLES, expected, strict=True)), **dict.fromkeys(REFUSED, 303)}
        assert got == want, path
    answer = browsers["viewer"].get("/pipeline")
    assert answer.headers["content-type"].startswith("text/html")


def test_health_needs_no_token_and_unknown_things_are_404(api: Api) -> None:
    assert api.call("GET", "/healthz", "none") == (200, {"status": "ok"})
    status, answer = api.call("GET", "/api/environments/nowhere", "viewer")
    assert status == 404 and answer == {"error": 'unknown environment "nowhere"', "hint": None}
    assert api.call("GET", "/api/deployments/nope", "viewer")[0] == 404
    assert api.call("POST", "/api/environments/nowhere/deploy", "deployer")[0] == 404
    # limited to production, it may not even learn whether an environment exists
    assert api.call("GET", "/api/environments/nowhere", "other-environment")[0] == 403


def test_the_answers_are_the_clis_json(api: Api) -> None:
    _, everything = api.call("GET", "/api/environments", "viewer")
    assert isinstance(everything, dict) and everything["project"] == "api"
    assert [e["name"] for e in everything["environments"]] == ["staging", "production"]
    _, limited = api.call("GET", "/api/environments", "other-environment")
    assert isinstance(limited, dict)
    assert [e["name"] for e in limited["environments"]] == ["production"]
    _, history = api.call("GET", f"{STAGING}/deployments", "viewer")
    assert isinstance(history, list) and history[0]["id"] == DEPLOYMENT
    assert history[0]["status"] == "succeeded" and history[0]["reason"] == "first"
    _, explained = api.call("GET", D, "viewer")
    assert isinstance(explained, dict) and explained["id"] == DEPLOYMENT
    _, dora = api.call("GET", f"{STAGING}/dora?since=7d", "viewer")
    assert isinstance(dora, dict) and set(dora) >= {"deployment_frequency", "lead_time"}
    status, answer = api.call("GET", f"{STAGING}/dora?since=soon", "viewer")
    assert status == 400 and isinstance(answer, dict) and "--since" in answer["error"]


def test_every_change_is_audited_with_the_tokens_name(api: Api) -> None:
    api.call("POST", f"{STAGING}/deploy", "viewer", {})
    api.call("POST", f"{STAGING}/pause", "deployer")
    api.call("POST", f"{STAGING}/deploy", "bad", {})
    api.call("GET", STAGING, "admin")
    entries = [(a.token, a.role, a.method, a.path, a.status) for a in api.store.list_audit()]
    assert entries == [
        ("deployer", "deployer", "POST", f"{STAGING}/pause", 409),
        ("viewer", "viewer", "POST", f"{STAGING}/deploy", 403),
    ]
    latest = api.store.list_audit()[0]
    assert latest.environment == "staging" and "no unfinished deployment" in latest.outcome
    status, audit = api.call("GET", "/api/audit", "admin")
    assert status == 200 and isinstance(audit, list) and audit[0]["token"] == "deployer"


def test_a_token_is_marked_used(api: Api) -> None:
    assert api.store.get_token("viewer").last_used_at is None  # type: ignore[union-attr]
    api.call("GET", "/api/environments", "viewer")
    assert api.store.get_token("viewer").last_used_at is not None  # type: ignore[union-attr]


def test_secrets_are_masked_and_surprises_give_no_traceback(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_secrets(["hunter2-very-secret"])
    try:
        api.store.update_deployment(DEPLOYMENT, error="db password hunter2-very-secret refused")
        status, answer = api.call("GET", f"{STAGING}/deployments", "viewer")
        assert status == 200 and "hunter2-very-secret" not in str(answer)
        assert "db password" in str(answer)
    finally:
        forget_secrets()

    def broken(*_: object) -> None:
        raise RuntimeError("internal detail nobody should see")

    monkeypatch.setattr("conveyor.engine.explain.explanation", broken)
    status, answer = api.call("GET", D, "viewer")
    assert status == 500
    assert answer == {"error": "internal error: the server's log has the details", "hint": None}


def test_bad_bodies_are_422_with_the_key_path(api: Api) -> None:
    status, answer = api.call("POST", f"{STAGING}/deploy", "deployer", {"releases": {"web": 3}})
    assert status == 422 and isinstance(answer, dict)
    assert "body/releases/web" in answer["error"] and set(answer) == {"error", "hint"}
    status, answer = api.call("POST", f"{STAGING}/deploy", "deployer", {"build": True})
    assert status == 422 and isinstance(answer, dict) and "body/build" in answer["error"]


def test_approvals_keep_the_four_eyes_rule(api: Api) -> None:
    waiting = api.store.get_deployment(DEPLOYMENT)
    assert waiting is not None
    api.store.create_deployment(
        replace(
            waiting,
            id="20261206-130000-beef",
            environment="production",
            status=AWAITING_APPROVAL,
            user="admin",  # deployed with the admin token
            finished_at=None,
        )
    )
    path = "/api/deployments/20261206-130000-beef/approve"
    status, answer = api.call("POST", path, "admin")
    assert status == 409 and isinstance(answer, dict) and answer["error"].startswith("refused")
    status, answer = api.call("POST", path, "approver", {"message": "looks good"})
    assert status == 200 and isinstance(answer, dict)
    assert answer["approval"].startswith("approved") and answer["deployment"]["user"] == "admin"
    decisions = api.store.list_approvals("20261206-130000-beef")
    assert [(d.user, d.approve, d.message) for d in decisions] == [("approver", True, "looks good")]


def test_metrics_show_what_the_token_may_see(api: Api) -> None:
    status, text = api.call("GET", "/metrics", "viewer")
    assert status == 200 and isinstance(text, str)
    assert "# TYPE conveyor_deployments_total counter" in text
    assert (
        'conveyor_deployments_total{environment="staging",kind="deploy",status="succeeded"}' in text
    )
    assert "conveyor_deployment_duration_seconds_bucket" in text
    _, limited = api.call("GET", "/metrics", "other-environment")
    assert isinstance(limited, str) and 'environment="staging"' not in limited
