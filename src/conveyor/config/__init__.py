"""conveyor.config: the models of `conveyor.yml`, its loader and its JSON Schema.

The names below are imported on first use, so that the light modules of this
package (`locate`, `cache`) can be imported without paying for pydantic:
`conveyor status` answers from them when the config has not changed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        DependenciesConfig,
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

_HOMES = {
    "durations": ("Duration", "format_duration", "parse_duration"),
    "loader": ("CONFIG_NAMES", "LoadedConfig", "find_config", "load_config", "parse_config"),
    "models": (
        "Command",
        "CommandHealth",
        "Config",
        "DependenciesConfig",
        "EnvironmentConfig",
        "HealthConfig",
        "HttpHealth",
        "ReleasesConfig",
        "RouteConfig",
        "ServiceConfig",
        "ServiceOverride",
        "StrategyConfig",
        "StrategyType",
        "TcpHealth",
        "command_argv",
        "parse_listen",
    ),
    "schema": ("json_schema",),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "CONFIG_NAMES",
    "Command",
    "CommandHealth",
    "Config",
    "DependenciesConfig",
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


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
