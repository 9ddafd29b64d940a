"""The targets: a signed webhook, a Slack incoming webhook, email over SMTP, GitHub deployments.

Each sender delivers one event and raises `NotifyError` (with a message free of
secrets) when it could not; the hub retries and records. Senders return data
worth keeping with the delivery (GitHub's deployment id).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx

from conveyor.config.models import EmailTarget, GithubTarget, SlackTarget, WebhookTarget
from conveyor.errors import ConveyorError
from conveyor.notify.events import DeployEvent
from conveyor.redaction import redact_text, url_secrets

USER_AGENT = "conveyor-deploy"


class NotifyError(ConveyorError):
    """A notification could not be delivered (the deploy is not affected)."""


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the body with the shared secret.

    >>> signature("s3cret", b'{"event": "succeeded"}')[:15]
    'sha256=a579d8b5'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def endpoint(url: str) -> str:
    """Where `url` goes, for messages: scheme, host and port. Its path and query
    often carry a token (Slack's always does), so they are never shown.

    >>> endpoint("https://user:pw@hooks.example.com:8443/T0/B0/xyz?token=abc")
    'https://hooks.example.com:8443'
    """
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme or 'http'}://{host}{port}"


def _url_secrets(url: str) -> list[str]:
    parts = urlsplit(url)
    return [url, parts.path, parts.query, *url_secrets(url)]


async def _post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, secrets: list[str]
) -> httpx.Response:
    secrets = [*secrets, *_url_secrets(url)]
    where = f"POST {endpoint(url)}"
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        problem = str(exc) or type(exc).__name__
        raise NotifyError(f"{where}: {redact_text(problem, secrets)}") from None
    if response.status_code >= 300:
        raise NotifyError(
            f"{where}: HTTP {response.status_code}: {redact_text(response.text[:200], secrets)}"
        )
    return response


async def send_webhook(target: WebhookTarget, event: DeployEvent) -> dict[str, Any]:
    body = json.dumps(event.to_dict(), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Conveyor-Event": event.event,
        "X-Conveyor-Delivery": f"{event.deployment}-{event.event}",
    }
    if target.secret:
        headers["X-Conveyor-Signature"] = signature(target.secret, body)
    await _post(target.url, body, headers, target.timeout, [target.secret or ""])
    return {}


_SLACK_ICONS = {
    "succeeded": ":white_check_mark:",
    "approved": ":thumbsup:",
    "started": ":rocket:",
    "awaiting_approval": ":hourglass:",
}


def slack_message(event: DeployEvent) -> dict[str, Any]:
    """An incoming-webhook message: a headline, what changes, who and why."""
    icon = _SLACK_ICONS.get(event.event, ":x:")
    changes = "\n".join(f"• `{line}`" for line in event.changes()) or "• no release changes"
    context = f"by {event.user}" + (f": {event.reason}" if event.reason else "")
    if event.error:
        context += f"\nerror: {event.error}"
    return {
        "text": f"{icon} {event.headline()}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{event.headline()}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": changes}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


async def send_slack(target: SlackTarget, event: DeployEvent) -> dict[str, Any]:
    body = json.dumps(slack_message(event)).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    await _post(target.webhook_url, body, headers, target.timeout, [])
    return {}


async def send_email(target: EmailTarget, event: DeployEvent) -> dict[str, Any]:
    message = EmailMessage()
    message["Subject"] = f"[{event.project}] {event.environment}: {event.deployment} " + (
        event.event.replace("_", " ")
    )
    message["From"] = target.sender
    message["To"] = ", ".join(target.to)
    message.set_content(event.text() + "\n")
    smtp = target.smtp

    def deliver() -> None:
        context = ssl.create_default_context(cafile=smtp.ca_file)
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
            client.ehlo()
            if smtp.starttls:
                client.starttls(context=context)
                client.ehlo()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            client.send_message(message)

    try:
        await asyncio.to_thread(deliver)
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        secrets = [smtp.password] if smtp.password else []
        raise NotifyError(
            f"SMTP {smtp.host}:{smtp.port}: {redact_text(str(exc) or type(exc).__name__, secrets)}"
        ) from None
    return {}


# GitHub deployment statuses for our events (a deploy that must be approved
# first starts `queued`).
GITHUB_STATES = {
    "started": "in_progress",
    "awaiting_approval": "queued",
    "approved": "in_progress",
    "succeeded": "success",
    "failed": "failure",
    "rolled_back": "failure",
    "aborted": "failure",
    "rejected": "failure",
    "refused": "failure",
}


async def send_github(
    target: GithubTarget,
    event: DeployEvent,
    known: Callable[[str], int | None],
    previous_active: Callable[[], int | None],
) -> dict[str, Any]:
    """Create the GitHub deployment at `started` and post its statuses after. On
    `succeeded` the environment's previous GitHub deployment gets `inactive`.

    `known(deployment)` is the GitHub id recorded for a Conveyor deployment;
    `previous_active()` the one of the last success in the environment.
    """
    api = target.api_url.rstrip("/") + f"/repos/{target.repository}"
    headers = {
        "Authorization": f"Bearer {target.token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    secrets = [target.token]
    state = GITHUB_STATES.get(event.event)
    if state is None:
        return {}
    if event.event == "started" and event.approval_required:
        state = "queued"
    github_id = known(event.deployment)
    data: dict[str, Any] = {}
    if github_id is None:
        ref = next(iter(event.commits.values()), None)
        if ref is None:
            raise NotifyError("GitHub deployments need a commit: no release of it has one")
        body = {
            "ref": ref,
            "environment": event.environment,
            "auto_merge": False,
            "required_contexts": [],
            "description": event.headline()[:140],
            "payload": {"conveyor_deployment": event.deployment, "releases": event.releases},
            "transient_environment": False,
            "production_environment": event.environment == "production",
        }
        created = await _post(
            f"{api}/deployments", json.dumps(body).encode(), headers, target.timeout, secrets
        )
        github_id = int(created.json()["id"])
        data["github_deployment_id"] = github_id
    await _status(api, headers, target.timeout, secrets, github_id, state, event)
    if event.event == "succeeded":
        before = previous_active()
        if before is not None and before != github_id:
            await _status(api, headers, target.timeout, secrets, before, "inactive", event)
    data["github_deployment_id"] = github_id
    return data


async def _status(
    api: str,
    headers: dict[str, str],
    timeout: float,
    secrets: list[str],
    github_id: int,
    state: str,
    event: DeployEvent,
) -> None:
    body = {
        "state": state,
        "description": (event.error or event.headline())[:140],
        "environment": event.environment,
        "auto_inactive": False,
    }
    if event.url.startswith(("http://", "https://")):
        body["environment_url"] = event.url
    await _post(
        f"{api}/deployments/{github_id}/statuses",
        json.dumps(body).encode(),
        headers,
        timeout,
        secrets,
    )
