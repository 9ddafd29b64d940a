"""The models of `conveyor.yml`, one module per section of the file.

Every model forbids unknown keys; the loader strips `x-` keys before validation.
Validators raise `problem(...)` errors whose message the loader shows as is, so
every message here is written for the person editing the file.

Sections: `services` (with its `route`) and `health`, `strategies`, `environments`
(with `policies`: windows, freezes, approvals), `databases`, `pipeline`, `hooks`,
`notify`, `analysis`, and `project` (the top-level `Config`). The small value types
they share are in `values` and `addresses`, the base model in `base`. Every public
name is importable from here, as it was when this was one module.
"""

from __future__ import annotations

from conveyor.config.models.accessories import (
    AccessoryConfig,
    AccessoryName,
    AccessoryOverride,
)
from conveyor.config.models.addresses import (
    DEFAULT_PORTS,
    ListenAddress,
    PortRange,
    parse_listen,
    parse_port_range,
)
from conveyor.config.models.analysis import (
    AnalysisTemplate,
    ComparativeConfig,
)
from conveyor.config.models.databases import (
    BackupSettings,
    DatabaseConfig,
    DatabaseName,
    DatabaseOverride,
    DatabaseUrlText,
    MigrateConfig,
    SqlDirectory,
)
from conveyor.config.models.environments import (
    EnvironmentConfig,
    RouterName,
    ServiceOverride,
    TargetName,
)
from conveyor.config.models.health import (
    CommandHealth,
    HealthConfig,
    HttpHealth,
    SmokeTest,
    TcpHealth,
)
from conveyor.config.models.hooks import (
    HooksConfig,
)
from conveyor.config.models.jobs import (
    ScheduledJob,
    ScheduledJobName,
)
from conveyor.config.models.monitors import AlertRule, MonitorsConfig, Probe
from conveyor.config.models.notify import (
    EmailTarget,
    GithubTarget,
    NotifyConfig,
    NotifyEvent,
    SlackTarget,
    SmtpConfig,
    WebhookTarget,
)
from conveyor.config.models.pipeline import (
    REPORT_KINDS,
    CoberturaReport,
    JobConfig,
    JobName,
    JunitReport,
    NpmAuditReport,
    PipAuditReport,
    PipelineConfig,
    ReportConfig,
    SarifReport,
    Severity,
)
from conveyor.config.models.policies import (
    ApprovalsConfig,
    Clock,
    Day,
    FreezeConfig,
    TimeZone,
    WindowConfig,
)
from conveyor.config.models.project import (
    Config,
    ReleasesConfig,
)
from conveyor.config.models.services import (
    DependenciesConfig,
    ReleasePath,
    RouteConfig,
    ServiceConfig,
)
from conveyor.config.models.strategies import (
    PROGRESSIVE,
    STRATEGY_TYPES,
    BlueGreenStrategy,
    CanaryStep,
    CanaryStrategy,
    PauseValue,
    StrategyConfig,
    StrategySpec,
    StrategyType,
)
from conveyor.config.models.values import (
    NAME_PATTERN,
    PROJECT_PATTERN,
    AnalysisName,
    Command,
    Env,
    EnvironmentName,
    EnvName,
    EnvValue,
    Fraction,
    NonNegativeInt,
    PositiveInt,
    ProjectName,
    ProjectPath,
    RelativePath,
    ReplicaCount,
    ServiceName,
    StatusCode,
    Step,
    command_argv,
)
from conveyor.config.models.verify import VerifyConfig

__all__ = [
    "DEFAULT_PORTS",
    "NAME_PATTERN",
    "PROGRESSIVE",
    "PROJECT_PATTERN",
    "REPORT_KINDS",
    "STRATEGY_TYPES",
    "AccessoryConfig",
    "AccessoryName",
    "AccessoryOverride",
    "AlertRule",
    "AnalysisName",
    "AnalysisTemplate",
    "ApprovalsConfig",
    "BackupSettings",
    "BlueGreenStrategy",
    "CanaryStep",
    "CanaryStrategy",
    "Clock",
    "CoberturaReport",
    "Command",
    "CommandHealth",
    "ComparativeConfig",
    "Config",
    "DatabaseConfig",
    "DatabaseName",
    "DatabaseOverride",
    "DatabaseUrlText",
    "Day",
    "DependenciesConfig",
    "EmailTarget",
    "Env",
    "EnvName",
    "EnvValue",
    "EnvironmentConfig",
    "EnvironmentName",
    "Fraction",
    "FreezeConfig",
    "GithubTarget",
    "HealthConfig",
    "HooksConfig",
    "HttpHealth",
    "JobConfig",
    "JobName",
    "JunitReport",
    "ListenAddress",
    "MigrateConfig",
    "MonitorsConfig",
    "NonNegativeInt",
    "NotifyConfig",
    "NotifyEvent",
    "NpmAuditReport",
    "PauseValue",
    "PipAuditReport",
    "PipelineConfig",
    "PortRange",
    "PositiveInt",
    "Probe",
    "ProjectName",
    "ProjectPath",
    "RelativePath",
    "ReleasePath",
    "ReleasesConfig",
    "ReplicaCount",
    "ReportConfig",
    "RouteConfig",
    "RouterName",
    "SarifReport",
    "ScheduledJob",
    "ScheduledJobName",
    "ServiceConfig",
    "ServiceName",
    "ServiceOverride",
    "Severity",
    "SlackTarget",
    "SmokeTest",
    "SmtpConfig",
    "SqlDirectory",
    "StatusCode",
    "Step",
    "StrategyConfig",
    "StrategySpec",
    "StrategyType",
    "TargetName",
    "TcpHealth",
    "TimeZone",
    "VerifyConfig",
    "WebhookTarget",
    "WindowConfig",
    "command_argv",
    "parse_listen",
    "parse_port_range",
]
