"""conveyor.config: the models of `conveyor.yml`, its loader and its JSON Schema."""

from conveyor.config.durations import Duration, format_duration, parse_duration
from conveyor.config.loader import (
    CONFIG_NAMES,
    LoadedConfig,
    find_config,
    load_config,
    parse_config,
)
from conveyor.config.models import (
    Command,
    CommandHealth,
    Config,
    EnvironmentConfig,
    HealthConfig,
    HttpHealth,
    ReleasesConfig,
    RouteConfig,
    ServiceConfig,
    ServiceOverride,
    StrategyConfig,
    StrategyType,
    TcpHealth,
    command_argv,
    parse_listen,
)
from conveyor.config.schema import json_schema

__all__ = [
    "CONFIG_NAMES",
    "Command",
    "CommandHealth",
    "Config",
    "Duration",
    "EnvironmentConfig",
    "HealthConfig",
    "HttpHealth",
    "LoadedConfig",
    "ReleasesConfig",
    "RouteConfig",
    "ServiceConfig",
    "ServiceOverride",
    "StrategyConfig",
    "StrategyType",
    "TcpHealth",
    "command_argv",
    "find_config",
    "format_duration",
    "json_schema",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_listen",
]
