"""The whole of `conveyor.yml`: the project, its services and environments."""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator, model_validator

from conveyor.config.durations import problem
from conveyor.config.models.accessories import AccessoryConfig, AccessoryName
from conveyor.config.models.addresses import DEFAULT_PORTS, PortRange, parse_port_range
from conveyor.config.models.analysis import AnalysisTemplate
from conveyor.config.models.base import _Model
from conveyor.config.models.databases import DatabaseConfig, DatabaseName
from conveyor.config.models.environments import EnvironmentConfig
from conveyor.config.models.health import TcpHealth
from conveyor.config.models.hooks import HooksConfig
from conveyor.config.models.jobs import ScheduledJob, ScheduledJobName
from conveyor.config.models.notify import NotifyConfig
from conveyor.config.models.pipeline import PipelineConfig
from conveyor.config.models.secrets import Secrets, SecretSource
from conveyor.config.models.services import RouteConfig, ServiceConfig
from conveyor.config.models.values import (
    AnalysisName,
    EnvironmentName,
    PositiveInt,
    ProjectName,
    ServiceName,
)
from conveyor.errors import UsageError


class ReleasesConfig(_Model):
    """How releases are kept on disk."""

    model_config = ConfigDict(extra="forbid")

    keep: PositiveInt = Field(
        5,
        description="How many releases to keep per service (at least 1), applied after every "
        "successful deploy and by `conveyor prune`. Never deleted: a release an environment "
        "serves, keeps warm or would roll back to, and the newest build. Releases that never "
        "deployed successfully go first.",
    )


class Config(_Model):
    """conveyor.yml: the services of a project and the environments they are deployed to."""

    model_config = ConfigDict(extra="forbid")

    project: ProjectName = Field(
        description='Project name: lowercase letters, digits and "-". It names processes, '
        "routes and the state."
    )
    releases: ReleasesConfig = Field(
        default_factory=ReleasesConfig, description="How releases are kept on disk."
    )
    ports: PortRange = Field(
        DEFAULT_PORTS,
        description='Ports the instances listen on (each gets a free one as $PORT), "LOW-HIGH". '
        "Keep it below the kernel's ephemeral range (net.ipv4.ip_local_port_range, usually "
        "32768-60999): a port from there can be taken at any moment by an outgoing connection.",
    )
    services: dict[ServiceName, ServiceConfig] = Field(
        description='The services, by name (lowercase letters, digits and "-", starting with a '
        "letter). At least one."
    )
    environments: dict[EnvironmentName, EnvironmentConfig] = Field(
        description='The environments, by name (lowercase letters, digits and "-", starting '
        "with a letter). At least one."
    )
    analysis: dict[AnalysisName, AnalysisTemplate] = Field(
        default_factory=dict,
        description="Analyses that judge a new release from live metrics, by name; canary and "
        "blue_green strategies refer to them.",
    )
    databases: dict[DatabaseName, DatabaseConfig] = Field(
        default_factory=dict,
        description="Databases the services use, by name: backups and migrations.",
    )
    accessories: dict[AccessoryName, AccessoryConfig] = Field(
        default_factory=dict,
        description="Long-lived backing services (Redis, a search engine, a mail catcher), by "
        "name: started once per environment, kept across deploys, their address given to "
        "services as ${accessories.NAME.url}, ${accessories.NAME.host} and "
        "${accessories.NAME.port}.",
    )
    pipeline: PipelineConfig | None = Field(
        None, description="The CI pipeline (`conveyor pipeline run`, `conveyor ci export`)."
    )
    groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Groups of people, by name, for approvals ("@sre" in approvers).',
    )
    hooks: HooksConfig | None = Field(None, description="Commands run around every deploy.")
    secrets: Secrets = Field(
        default_factory=dict,
        description="Secrets of every environment (each environment's `secrets:` is merged "
        "over these): encrypted, {env: VAR}, {command: [...]} or {dotenv: FILE}.",
    )
    notify: list[NotifyConfig] = Field(
        default_factory=list,
        description="Where deployment events go: webhook, slack, email, github.",
    )
    jobs: dict[ScheduledJobName, ScheduledJob] = Field(
        default_factory=dict,
        description="Commands and backups on a schedule, run by `conveyor agent ENV` under "
        "supervisord (started by deploys of environments that have jobs).",
    )

    @field_validator("services")
    @classmethod
    def _some_services(cls, value: dict[str, ServiceConfig]) -> dict[str, ServiceConfig]:
        if not value:
            raise problem("at least one service is required")
        return value

    @model_validator(mode="after")
    def _default_route(self) -> Config:
        # The default route goes to `web`, or to the only service; the others without a
        # route are workers (`conveyor.config.kinds`).
        name = "web" if "web" in self.services else None
        if name is None and len(self.services) == 1:
            name = next(iter(self.services))
        if name is not None and self.services[name].route is None:
            self.services[name].route = RouteConfig()
        for service in self.services.values():
            if service.route is not None and service.health is None:
                service.health = TcpHealth()  # a worker's: its process running
        return self

    @field_validator("environments")
    @classmethod
    def _some_environments(
        cls, value: dict[str, EnvironmentConfig]
    ) -> dict[str, EnvironmentConfig]:
        if not value:
            raise problem("at least one environment is required")
        return value

    def environment(self, name: str) -> EnvironmentConfig:
        """The environment called `name`; `UsageError` when there is none."""
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments))
            raise UsageError(f'unknown environment "{name}" (environments are: {known})') from None

    def service(self, name: str) -> ServiceConfig:
        """The service called `name` as written, without environment overrides."""
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services))
            raise UsageError(f'unknown service "{name}" (services are: {known})') from None

    def database_url(self, name: str, environment: str | None = None) -> str:
        """The URL of database `name`, as `environment` overrides it (or as written)."""
        try:
            database = self.databases[name]
        except KeyError:
            known = ", ".join(sorted(self.databases)) or "none defined"
            raise UsageError(f'unknown database "{name}" (databases: {known})') from None
        if environment is not None:
            override = self.environment(environment).databases.get(name)
            if override is not None:
                return override.url
        return database.url

    def ports_for(self, environment: str) -> range:
        """The instance ports of `environment`: its own `ports`, else the project's."""
        return parse_port_range(self.environment(environment).ports or self.ports)

    def secrets_for(self, environment: str) -> dict[str, SecretSource]:
        """The secrets of `environment`: the project's, with the environment's over them."""
        return {**self.secrets, **self.environment(environment).secrets}

    def jobs_for(self, environment: str) -> dict[str, ScheduledJob]:
        """The scheduled jobs that run in `environment`, by name."""
        return {name: job for name, job in self.jobs.items() if job.runs_in(environment)}

    def accessories_for(self, environment: str) -> dict[str, AccessoryConfig]:
        """The accessories of `environment`, its overrides applied (port, host, env merged
        over the accessory's), without those it disables."""
        overrides = self.environment(environment).accessories
        found: dict[str, AccessoryConfig] = {}
        for name, accessory in self.accessories.items():
            override = overrides.get(name)
            if override is None:
                found[name] = accessory
            elif override.enabled:
                update: dict[str, object] = {"env": {**accessory.env, **override.env}}
                if override.port is not None:
                    update["port"] = override.port
                if override.host is not None:
                    update["host"] = override.host
                found[name] = accessory.model_copy(update=update, deep=True)
        return found

    def service_for(self, environment: str, service: str) -> ServiceConfig:
        """The service as it runs in `environment`.

        `replicas` comes from the environment's override when it sets one; env is
        merged with later winning: service env < environment env < override env.
        """
        env_config = self.environment(environment)
        base = self.service(service)
        override = env_config.services.get(service)
        merged = {**base.env, **env_config.env}
        replicas = base.replicas
        if override is not None:
            merged.update(override.env)
            if override.replicas is not None:
                replicas = override.replicas
        return base.model_copy(update={"env": merged, "replicas": replicas}, deep=True)
