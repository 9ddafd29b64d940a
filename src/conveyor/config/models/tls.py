"""`tls:`: the certificate an environment's router serves HTTPS with."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from conveyor.config.models.base import _Model


class TlsConfig(_Model):
    """PEM files on the deploying machine; the router serves the environment's `listen`
    over HTTPS with them. The key is read by the router only, never copied into a release."""

    model_config = ConfigDict(extra="forbid")

    certificate: str = Field(
        min_length=1,
        description="PEM file with the certificate, then its intermediates (relative to "
        "conveyor.yml's directory).",
    )
    key: str = Field(
        min_length=1,
        description="PEM file with the certificate's private key, unencrypted; it must not be "
        "readable by other users (chmod 600).",
    )


class ServerRouteConfig(_Model):
    """`conveyor server` reached through this environment's router (and its `tls:`)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$",
        description="Host name whose requests go to `conveyor server` (all its paths: the "
        "dashboard and the API), e.g. conveyor.example.com.",
    )
    address: str = Field(
        "127.0.0.1:8700",
        pattern=r"^[A-Za-z0-9_.-]+:\d{1,5}$",
        description='Where `conveyor server start` listens ("127.0.0.1:8700", its default).',
    )
