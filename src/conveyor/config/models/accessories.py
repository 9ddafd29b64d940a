"""Accessories: long-lived backing services (Redis, a search engine, a mail catcher) that
run beside an environment's services and that deploys do not roll."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from conveyor.config import hosts as on_hosts
from conveyor.config.durations import Duration, describe_value, problem
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.health import HealthConfig, TcpHealth
from conveyor.config.models.values import (
    _NAME_SCHEMA,
    Command,
    Env,
    _int_validator,
    _name_validator,
)

AccessoryName = Annotated[str, _name_validator("accessory"), _NAME_SCHEMA]
Port = Annotated[
    int,
    _int_validator(1, 65535),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 65535}),
]
URL_FIELDS = ("host", "port")  # what a `url:` template may name: {host}, {port}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def fill_url(template: str, host: str, port: int) -> str:
    """`template` with `{host}` and `{port}` filled in (an IPv6 host in brackets).

    >>> fill_url("redis://{host}:{port}/0", "10.0.0.5", 6390)
    'redis://10.0.0.5:6390/0'
    """
    shown = f"[{host}]" if ":" in host else host
    values = {"host": shown, "port": str(port)}
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


class AccessoryConfig(_Model):
    """A program with a data directory and a port, started once and kept running across
    deploys (`conveyor accessory start|stop|restart|logs ENV NAME`)."""

    model_config = ConfigDict(extra="forbid")

    run: Command = Field(
        description="Command that starts it: a string (run by /bin/sh -c) or a list of strings "
        "(argv). $PORT, $HOST, $DATA_DIR and $CONVEYOR_ENV are filled in when it starts, e.g. "
        '"redis-server --bind $HOST --port $PORT --dir $DATA_DIR --appendonly yes".'
    )
    port: Port | None = Field(
        None,
        description="The port it listens on. Default: a free one of the environment's `ports`, "
        "chosen at its first start and kept.",
    )
    host: on_hosts.HostName | None = Field(
        None,
        description="On a `target: ssh` environment, the host it runs on (default: the "
        "environment's first host). Environments with `target: local` run it on this machine.",
    )
    env: Env = Field(default_factory=dict, description="Environment variables it gets.")
    health: HealthConfig = Field(
        default_factory=TcpHealth,
        description="How to tell it is up after a start (default: {type: tcp} on its port).",
    )
    url: str | None = Field(
        None,
        description="The address services get as ${accessories.NAME.url}: a template with {host} "
        'and {port}, e.g. "redis://{host}:{port}/0" (default "{host}:{port}").',
    )
    start_timeout: Duration = _duration_field(60.0, "How long it has to become healthy")
    stop_timeout: Duration = _duration_field(
        30.0, "How long it has to exit after SIGTERM before it gets SIGKILL"
    )

    @field_validator("url")
    @classmethod
    def _known_placeholders(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for name in _PLACEHOLDER.findall(value):
            if name not in URL_FIELDS:
                raise problem(
                    f"unknown placeholder {describe_value('{' + name + '}')} "
                    "(a url template may use {host} and {port})"
                )
        return value

    @property
    def url_template(self) -> str:
        return self.url if self.url is not None else "{host}:{port}"


def _disabled(value: Any) -> Any:
    """`false` is `{enabled: false}`; `true` is nothing to override."""
    if value is False:
        return {"enabled": False}
    if value is True or value is None:
        return {}
    return value


class AccessoryOverride(_Model):
    """What differs for one accessory in this environment; `false` leaves it out here."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: the environment has no such accessory.")
    port: Port | None = Field(None, description="Its port in this environment.")
    host: on_hosts.HostName | None = Field(None, description="Its host in this environment.")
    env: Env = Field(
        default_factory=dict, description="Environment variables merged over the accessory's."
    )


AccessoryOverrideSpec = Annotated[AccessoryOverride, BeforeValidator(_disabled)]
