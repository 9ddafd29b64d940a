"""Environments: where the services are deployed, and what differs there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, field_validator

from conveyor.config import hosts as on_hosts
from conveyor.config.durations import describe_value, problem
from conveyor.config.models.accessories import AccessoryName, AccessoryOverrideSpec
from conveyor.config.models.addresses import ListenAddress, PortRange, parse_listen
from conveyor.config.models.base import _Model
from conveyor.config.models.databases import DatabaseName, DatabaseOverride
from conveyor.config.models.hooks import HooksConfig
from conveyor.config.models.monitors import MonitorsConfig
from conveyor.config.models.policies import ApprovalsConfig, FreezeConfig, WindowConfig
from conveyor.config.models.secrets import Secrets, secrets_field
from conveyor.config.models.strategies import (
    StrategyConfig,
    StrategySpec,
    _strategy_schema,
    _strategy_shorthand,
)
from conveyor.config.models.tls import ServerRouteConfig, TlsConfig
from conveyor.config.models.values import (
    Env,
    EnvironmentName,
    ReplicaCount,
    ServiceName,
    _int_validator,
)
from conveyor.config.models.verify import VerifyConfig
from conveyor.plugins import DEFAULT_ROUTER, DEFAULT_TARGET, ROUTERS, TARGETS

DEFAULT_PARALLEL = 8  # hosts acted on at once (`parallel:`)
MAX_PARALLEL = 256

if TYPE_CHECKING:
    RouterName = str
    TargetName = str
else:  # the registered names (`conveyor.plugins`): errors and the schema list them
    RouterName = Literal[tuple(ROUTERS)]
    TargetName = Literal[tuple(TARGETS)]


class ServiceOverride(_Model):
    """Settings of one service that differ in this environment."""

    model_config = ConfigDict(extra="forbid")

    replicas: ReplicaCount | None = Field(
        None, description="Number of instances in this environment (replaces the service's)."
    )
    env: Env = Field(
        default_factory=dict,
        description="Environment variables merged over the service's and the environment's.",
    )


class EnvironmentConfig(_Model):
    """A place the services are deployed to (staging, production, ...)."""

    model_config = ConfigDict(extra="forbid")

    listen: ListenAddress = Field(
        description='Address the router listens on, "host:port": "127.0.0.1:8080", '
        '"[::1]:8080", or ":8080" for all interfaces.'
    )
    url: str | None = Field(
        None,
        description="Public URL of the environment, starting with http:// or https://. "
        'Default: "http://<listen host or 127.0.0.1>:<port>" (https:// with `tls:`).',
    )
    tls: TlsConfig | None = Field(
        None,
        description="Serve `listen` over HTTPS with this certificate and key (PEM files); "
        "the instances get plain HTTP with X-Forwarded-Proto: https.",
    )
    server: ServerRouteConfig | None = Field(
        None,
        description="Route the requests for `host` on this environment's listen address "
        "(over its `tls:`) to `conveyor server`.",
    )
    ports: PortRange | None = Field(
        None,
        description='Ports the instances of this environment listen on, "LOW-HIGH" (default: '
        "the project's ports).",
    )
    router: RouterName = Field(
        DEFAULT_ROUTER,
        description='Router that sends traffic to instances: "caddy" (embedded, the default) or '
        '"haproxy" (from the OS packages; changes weights without reloading).',
    )
    target: TargetName = Field(
        DEFAULT_TARGET,
        description='Where the instances run: "local" (this machine, under supervisord; the '
        "default).",
    )
    parallel: Annotated[int, _int_validator(1, MAX_PARALLEL)] = Field(
        DEFAULT_PARALLEL,
        description="On a `target: ssh` environment, how many hosts are acted on at once "
        f"(shipping releases, starting and stopping instances); default {DEFAULT_PARALLEL}.",
    )
    strategy: Annotated[StrategySpec, BeforeValidator(_strategy_shorthand)] = Field(
        default_factory=StrategyConfig,
        description='Deploy strategy: "rolling", "immediate", "recreate", "blue_green" or '
        '"canary", or a mapping with "type" and its settings.',
        json_schema_extra=_strategy_schema,
    )
    env: Env = Field(
        default_factory=dict,
        description="Environment variables of every instance in this environment, merged over "
        "each service's env.",
    )
    secrets: Secrets = secrets_field()
    services: dict[ServiceName, ServiceOverride] = Field(
        default_factory=dict,
        description="Per-service settings for this environment, by service name.",
    )
    databases: dict[DatabaseName, DatabaseOverride] = Field(
        default_factory=dict,
        description="Per-database settings for this environment (its URL), by database name.",
    )
    accessories: dict[AccessoryName, AccessoryOverrideSpec] = Field(
        default_factory=dict,
        description="Per-accessory settings for this environment (port, host, env), by name; "
        "false: this environment has no such accessory.",
    )
    require_pipeline: bool = Field(
        False,
        description="Deploy only releases whose commit passed the pipeline (`--force` "
        "overrides, recorded).",
    )
    promote_from: EnvironmentName | None = Field(
        None,
        description="Only releases that succeeded in this environment may be deployed here "
        "(`conveyor promote SOURCE THIS`).",
    )
    branches: list[str] = Field(
        default_factory=list,
        description='Git branches (fnmatch patterns, "release/*") whose commits may be '
        "deployed here; empty: any.",
    )
    windows: list[WindowConfig] = Field(
        default_factory=list,
        description="When deploys may start; empty: any time (`--override-window` overrides, "
        "recorded).",
    )
    freeze: list[FreezeConfig] = Field(
        default_factory=list, description="Date ranges without deploys."
    )
    approvals: ApprovalsConfig | None = Field(
        None, description="Manual approval before a deploy starts."
    )
    hooks: HooksConfig | None = Field(
        None, description="This environment's hooks, run after the project's."
    )
    verify: VerifyConfig | None = Field(
        None,
        description="Checks that go on for a bake time after a deploy gave the new releases "
        "all the traffic; a failure rolls the deploy back.",
    )
    monitors: MonitorsConfig | None = Field(
        None,
        description="Probes and alert rules evaluated by the environment's agent after the "
        "deploys (alert_firing / alert_resolved to the notify: targets).",
    )
    hosts: on_hosts.HostsSpec | None = on_hosts.hosts_field()
    router_host: on_hosts.RouterHost = on_hosts.router_host_field()
    run_host: on_hosts.HostName | None = on_hosts.run_host_field()

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or value in ("http://", "https://"):
            raise problem(
                f"expected a URL starting with http:// or https://, got {describe_value(value)}"
            )
        return value

    @property
    def listen_host(self) -> str:
        """The host part of `listen` without brackets; "" means all interfaces."""
        return parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        """The port part of `listen`."""
        return parse_listen(self.listen)[1]

    @property
    def effective_url(self) -> str:
        """`url`, else `http(s)://<listen host>:<port>` (https with `tls:`), where a listen
        on every interface is reached at 127.0.0.1, or at the router host's address when
        the router runs on a host of the list (`router_host:`)."""
        if self.url is not None:
            return self.url
        host = self.listen_host
        if host in ("", "0.0.0.0", "::"):
            hosts = self.hosts if isinstance(self.hosts, list) else []
            host = next(
                (h.address for h in hosts if h.name == self.router_host),
                "::1" if host == "::" else "127.0.0.1",
            )
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self.listen_port}"
