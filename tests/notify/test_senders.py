"""Each target against a real server: what it sends, and what it says when it cannot."""

from __future__ import annotations

import asyncio
import email
import hashlib
import hmac
from email import policy
from typing import Any, get_args

import pytest

from conveyor.config.models import (
    EmailTarget,
    GithubTarget,
    NotifyEvent,
    SlackTarget,
    WebhookTarget,
)
from conveyor.notify.events import TITLES, DeployEvent
from conveyor.notify.senders import (
    NotifyError,
    send_email,
    send_github,
    send_slack,
    send_webhook,
    slack_message,
)
from tests.notify.conftest import SMTP_PASSWORD, SMTP_USER, Mailbox
from tests.support.project import free_port
from tests.support.receiver import Receiver


def event(kind: str = "succeeded", **changes: Any) -> DeployEvent:
    values: dict[str, Any] = {
        "event": kind,
        "project": "shop",
        "environment": "production",
        "deployment": "d-20261201-0001",
        "kind": "deploy",
        "status": "succeeded",
        "user": "ana@example.com",
        "releases": {"api": "r2", "web": "w1"},
        "previous": {"api": "r1", "web": "w1"},
        "commits": {"api": "0123456789abcdef0123456789abcdef01234567"},
        "url": "https://shop.example.com",
        "reason": "ship the cart",
        **changes,
    }
    return DeployEvent(**values)


@pytest.mark.parametrize("kind", get_args(NotifyEvent))
def test_every_event_a_target_can_subscribe_to_has_its_own_headline(kind: str) -> None:
    assert event(kind).headline().endswith(TITLES[kind])


def test_webhook_posts_the_event_signed_with_the_secret(http: Receiver) -> None:
    target = WebhookTarget(url=f"{http.base}/hooks/deploys", secret="whsec-42")
    asyncio.run(send_webhook(target, event()))
    (request,) = http.received
    assert request.path == "/hooks/deploys"
    body = request.json()
    assert body["event"] == "succeeded" and body["releases"] == {"api": "r2", "web": "w1"}
    assert body["previous"]["api"] == "r1" and body["user"] == "ana@example.com"
    expected = hmac.new(b"whsec-42", request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-conveyor-signature"] == f"sha256={expected}"
    assert request.headers["x-conveyor-event"] == "succeeded"


def test_webhook_without_secret_is_unsigned(http: Receiver) -> None:
    asyncio.run(send_webhook(WebhookTarget(url=http.base + "/h"), event("started")))
    assert "x-conveyor-signature" not in http.received[0].headers


def test_webhook_errors_say_what_failed_without_the_secrets(http: Receiver) -> None:
    http.fail["/h?token=tok-hidden"] = 503
    target = WebhookTarget(url=f"{http.base}/h?token=tok-hidden", secret="whsec-42")
    with pytest.raises(NotifyError) as caught:
        asyncio.run(send_webhook(target, event()))
    assert caught.value.message.startswith(f"POST {http.base}: HTTP 503")
    assert "tok-hidden" not in caught.value.message

    nobody = WebhookTarget(url=f"http://127.0.0.1:{free_port()}/h", timeout=2)
    with pytest.raises(NotifyError) as refused:
        asyncio.run(send_webhook(nobody, event()))
    assert "POST http://127.0.0.1:" in refused.value.message


def test_slack_message_says_what_changed_who_and_why(http: Receiver) -> None:
    asyncio.run(send_slack(SlackTarget(webhook_url=f"{http.base}/services/T0/B0/x"), event()))
    message = http.received[0].json()
    assert message["text"].startswith(":white_check_mark: shop: deploy d-20261201-0001")
    texts = [b["text"]["text"] for b in message["blocks"] if "text" in b]
    assert "• `api r2 (was r1)`" in texts[1] and "web" not in texts[1]  # web did not change
    assert message["blocks"][2]["elements"][0]["text"] == "by ana@example.com: ship the cart"
    failed = slack_message(event("rolled_back", error="health check failed on api-2"))
    assert failed["text"].startswith(":x: ") and "failed and was rolled back" in failed["text"]
    assert "error: health check failed on api-2" in failed["blocks"][2]["elements"][0]["text"]


def test_slack_errors_never_show_the_webhook_url(http: Receiver) -> None:
    http.fail["/services/T0/B0/very-secret"] = 404
    target = SlackTarget(webhook_url=f"{http.base}/services/T0/B0/very-secret")
    with pytest.raises(NotifyError) as caught:
        asyncio.run(send_slack(target, event()))
    assert "very-secret" not in caught.value.message and "HTTP 404" in caught.value.message


def email_target(mailbox: Mailbox, **smtp: Any) -> EmailTarget:
    settings = {
        "host": "127.0.0.1",
        "port": mailbox.port,
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "ca_file": str(mailbox.ca_file),
        **smtp,
    }
    return EmailTarget.model_validate(
        {"smtp": settings, "from": "conveyor@example.com", "to": ["ops@example.com"]}
    )


def test_email_goes_over_starttls_with_login(smtp: Mailbox) -> None:
    asyncio.run(send_email(email_target(smtp), event("rolled_back", error="p95 1.2s > 500ms")))
    assert smtp.logins == [SMTP_USER]
    (raw,) = smtp.messages
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["Subject"] == "[shop] production: d-20261201-0001 rolled back"
    assert message["To"] == "ops@example.com"
    body = message.get_content()
    assert "shop: deploy d-20261201-0001 of production failed and was rolled back" in body
    assert "api r2 (was r1)" in body and "error: p95 1.2s > 500ms" in body


def test_email_refuses_a_server_it_cannot_verify(smtp: Mailbox) -> None:
    with pytest.raises(NotifyError) as caught:
        asyncio.run(send_email(email_target(smtp, ca_file=None), event()))
    assert "certificate verify failed" in caught.value.message
    assert smtp.messages == [] and smtp.logins == []


def test_email_login_failure_is_reported_without_the_password(smtp: Mailbox) -> None:
    with pytest.raises(NotifyError) as caught:
        asyncio.run(send_email(email_target(smtp, password="wrong-pw-123"), event()))
    assert caught.value.message.startswith(f"SMTP 127.0.0.1:{smtp.port}: (535")
    assert "wrong-pw-123" not in caught.value.message and smtp.messages == []


def github(http: Receiver) -> GithubTarget:
    return GithubTarget(repository="acme/shop", token="ghp_secret", api_url=http.base)


def test_github_creates_the_deployment_then_posts_its_status(http: Receiver) -> None:
    data = asyncio.run(send_github(github(http), event("started"), lambda _: None, lambda: None))
    created, status = http.received
    assert created.path == "/repos/acme/shop/deployments"
    assert created.headers["authorization"] == "Bearer ghp_secret"
    body = created.json()
    assert body["ref"] == "0123456789abcdef0123456789abcdef01234567"
    assert body["environment"] == "production" and body["production_environment"] is True
    assert body["payload"]["conveyor_deployment"] == "d-20261201-0001"
    assert status.path == f"/repos/acme/shop/deployments/{data['github_deployment_id']}/statuses"
    assert status.json()["state"] == "in_progress"
    assert status.json()["environment_url"] == "https://shop.example.com"


def test_github_waits_queued_when_approval_is_required(http: Receiver) -> None:
    asyncio.run(
        send_github(
            github(http), event("started", approval_required=True), lambda _: None, lambda: None
        )
    )
    assert http.received[1].json()["state"] == "queued"


def test_github_success_makes_the_previous_deployment_inactive(http: Receiver) -> None:
    asyncio.run(send_github(github(http), event(), lambda _: 7, lambda: 3))
    assert [(r.path, r.json()["state"]) for r in http.received] == [
        ("/repos/acme/shop/deployments/7/statuses", "success"),
        ("/repos/acme/shop/deployments/3/statuses", "inactive"),
    ]


def test_github_needs_a_commit(http: Receiver) -> None:
    with pytest.raises(NotifyError, match="need a commit"):
        asyncio.run(send_github(github(http), event(commits={}), lambda _: None, lambda: None))
    assert http.received == []
