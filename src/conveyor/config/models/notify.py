"""Notifications: where deployment events go (webhook, Slack, email, GitHub)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from conveyor.config.durations import Duration, problem
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.values import EnvironmentName, PositiveInt

NotifyEvent = Literal[
    "started",
    "awaiting_approval",
    "approved",
    "succeeded",
    "failed",
    "aborted",
    "rolled_back",
    "rejected",
    "refused",
    "verify_failed",
    "job_failed",  # a scheduled job (jobs:) failed
    "alert_firing",  # a rule or probe of monitors: fired
    "alert_resolved",  # ... and resolved
]


class _NotifyBase(_Model):
    events: list[NotifyEvent] = Field(
        default_factory=list, description="Only these events; empty: all of them."
    )
    environments: list[EnvironmentName] = Field(
        default_factory=list, description="Only these environments; empty: all of them."
    )


class WebhookTarget(_Model):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Where the JSON event is POSTed.")
    secret: str | None = Field(
        None,
        description="Signs the body: X-Conveyor-Signature: sha256=<HMAC-SHA256 hex of the body>.",
    )
    timeout: Duration = _duration_field(10.0, "How long one delivery may take")


class SlackTarget(_Model):
    model_config = ConfigDict(extra="forbid")

    webhook_url: str = Field(description="A Slack incoming webhook URL.")
    timeout: Duration = _duration_field(10.0, "How long one delivery may take")


class SmtpConfig(_Model):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="The SMTP server.")
    port: PositiveInt = Field(587, description="Its port (587: submission with STARTTLS).")
    username: str | None = Field(None, description="Login, when the server wants one.")
    password: str | None = Field(None, description="Password; use ${VAR}.")
    starttls: bool = Field(True, description="Upgrade to TLS before sending (and logging in).")
    ca_file: str | None = Field(
        None, description="CA certificates to trust for the server (default: the system's)."
    )
    timeout: Duration = _duration_field(15.0, "How long one delivery may take")


class EmailTarget(_Model):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    smtp: SmtpConfig = Field(description="How to send.")
    sender: str = Field(alias="from", description="The From address.")
    to: list[str] = Field(description="Recipients.")


class GithubTarget(_Model):
    model_config = ConfigDict(extra="forbid")

    repository: str = Field(description='"owner/name".')
    token: str = Field(description="A token allowed to write deployments; use ${VAR}.")
    api_url: str = Field("https://api.github.com", description="GitHub (Enterprise) API URL.")
    timeout: Duration = _duration_field(10.0, "How long one request may take")


class NotifyConfig(_NotifyBase):
    """One place deployment events go: exactly one of webhook, slack, email, github."""

    model_config = ConfigDict(extra="forbid")

    webhook: WebhookTarget | None = Field(None, description="POST the event as signed JSON.")
    slack: SlackTarget | None = Field(None, description="Post to a Slack incoming webhook.")
    email: EmailTarget | None = Field(None, description="Send an email over SMTP.")
    github: GithubTarget | None = Field(
        None, description="Record GitHub deployments and their statuses."
    )

    def model_post_init(self, context: Any, /) -> None:
        given = [k for k in ("webhook", "slack", "email", "github") if getattr(self, k)]
        if len(given) != 1:
            raise problem(
                "each notify target is one of webhook, slack, email or github; got "
                + (" and ".join(given) or "none")
            )

    @property
    def kind(self) -> str:
        return next(k for k in ("webhook", "slack", "email", "github") if getattr(self, k))
