from __future__ import annotations

import datetime

import pytest
from pydantic import ValidationError

from conveyor.config import (
    CommandHealth,
    Config,
    EnvironmentConfig,
    HttpHealth,
    ServiceConfig,
    ServiceOverride,
    StrategyConfig,
    TcpHealth,
    command_argv,
    parse_listen,
)
from conveyor.errors import UsageError


def make_config() -> Config:
    return Config.model_validate(
        {
            "project": "shop",
            "services": {
                "api": {"run": "x", "replicas": 2, "env": {"A": "svc", "B": "svc", "C": "svc"}},
                "web": {"run": ["node", "server.js"]},
            },
            "environments": {
                "staging": {"listen": ":8080", "env": {"B": "env", "C": "env", "D": "env"}},
                "production": {
                    "listen": ":8081",
                    "env": {"B": "env"},
                    "services": {"api": {"replicas": 5, "env": {"C": "override", "E": "o"}}},
                },
                "preview": {"listen": ":8082", "services": {"api": {"env": {"A": "o"}}}},
            },
        }
    )


@pytest.mark.parametrize(
    ("environment", "service", "replicas", "env"),
    [
        ("staging", "api", 2, {"A": "svc", "B": "env", "C": "env", "D": "env"}),
        ("production", "api", 5, {"A": "svc", "B": "env", "C": "override", "E": "o"}),
        ("preview", "api", 2, {"A": "o", "B": "svc", "C": "svc"}),
        ("staging", "web", 1, {"B": "env", "C": "env", "D": "env"}),
        ("production", "web", 1, {"B": "env"}),
    ],
)
def test_service_for_merges_overrides(
    environment: str, service: str, replicas: int, env: dict[str, str]
) -> None:
    config = make_config()
    merged = config.service_for(environment, service)
    assert merged.replicas == replicas
    assert merged.env == env
    assert merged.run == config.services[service].run


def test_service_for_leaves_the_config_unchanged() -> None:
    config = make_config()
    before = config.model_dump()
    config.service_for("production", "api").env["X"] = "changed"
    assert config.model_dump() == before


@pytest.mark.parametrize(
    ("environment", "service", "message"),
    [
        (
            "prod",
            "api",
            'unknown environment "prod" (environments are: preview, production, staging)',
        ),
        ("staging", "apii", 'unknown service "apii" (services are: api, web)'),
    ],
)
def test_service_for_unknown_names(environment: str, service: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        make_config().service_for(environment, service)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("cmd", "argv"),
    [
        ("python server.py", ["/bin/sh", "-c", "python server.py"]),
        (["python", "server.py"], ["python", "server.py"]),
    ],
)
def test_command_argv(cmd: str | list[str], argv: list[str]) -> None:
    assert command_argv(cmd) == argv


def test_argv_numbers_become_strings() -> None:
    service = ServiceConfig.model_validate({"run": ["sleep", 5], "build": [["echo", True]]})
    assert service.run == ["sleep", "5"]
    assert service.build == [["echo", "true"]]


@pytest.mark.parametrize(
    ("listen", "host", "port", "url"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080, "http://127.0.0.1:8080"),
        (":8080", "", 8080, "http://127.0.0.1:8080"),
        ("0.0.0.0:80", "0.0.0.0", 80, "http://127.0.0.1:80"),
        ("[::1]:80", "::1", 80, "http://[::1]:80"),
        ("[::]:9000", "::", 9000, "http://[::1]:9000"),
        ("localhost:3000", "localhost", 3000, "http://localhost:3000"),
    ],
)
def test_environment_listen_helpers(listen: str, host: str, port: int, url: str) -> None:
    environment = EnvironmentConfig(listen=listen)
    assert (environment.listen_host, environment.listen_port) == (host, port)
    assert parse_listen(listen) == (host, port)
    assert environment.effective_url == url


def test_explicit_url_wins() -> None:
    environment = EnvironmentConfig(listen=":80", url="https://shop.example.com")
    assert environment.effective_url == "https://shop.example.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rolling", StrategyConfig(type="rolling")),
        ("immediate", StrategyConfig(type="immediate")),
        ({"type": "rolling", "max_surge": "25%"}, StrategyConfig(max_surge="25%")),
        ({"max_unavailable": "1"}, StrategyConfig(max_unavailable=1)),
        ({"min_ready": "5s"}, StrategyConfig(min_ready=5.0)),
    ],
)
def test_strategy_forms(value: object, expected: StrategyConfig) -> None:
    assert (
        EnvironmentConfig.model_validate({"listen": ":80", "strategy": value}).strategy == expected
    )


@pytest.mark.parametrize(
    ("value", "model"),
    [
        ({"type": "http"}, HttpHealth),
        ({"type": "tcp"}, TcpHealth),
        ({"type": "command", "command": ["true"]}, CommandHealth),
    ],
)
def test_health_union(value: dict[str, object], model: type) -> None:
    service = ServiceConfig.model_validate({"run": "x", "health": value})
    assert type(service.health) is model


def test_models_forbid_unknown_keys() -> None:
    for model, data in [
        (ServiceOverride, {"replicas": 1, "run": "x"}),
        (StrategyConfig, {"surge": 1}),
        (ServiceConfig, {"run": "x", "x-note": 1}),  # only the loader strips x- keys
    ]:
        with pytest.raises(ValidationError):
            model.model_validate(data)


def test_python_callers_may_give_seconds() -> None:
    assert HttpHealth(timeout=0.25).timeout == 0.25
    service = ServiceConfig(run="x", stop_timeout=1.5)
    assert service.stop_timeout == 1.5
    assert service.model_dump(mode="json")["stop_timeout"] == "1.5s"


def test_json_dump_round_trips() -> None:
    config = make_config()
    assert Config.model_validate(config.model_dump(mode="json")) == config


def test_env_scalars_become_strings() -> None:
    service = ServiceConfig.model_validate(
        {"run": "x", "env": {"N": 4, "F": 1.5, "B": False, "D": datetime.date(2024, 1, 31), 7: "k"}}
    )
    assert service.env == {"N": "4", "F": "1.5", "B": "false", "D": "2024-01-31", "7": "k"}
