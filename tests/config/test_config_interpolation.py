from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.config.loader import interpolate
from conveyor.errors import ConfigError

HOW_TO_REFER = ' (write ${NAME} or ${NAME:-default}, or $$ for a literal "$")'
ENVIRON = {"HOST": "db.internal", "EMPTY": "", "PORT": "5432", "REPLICAS": "3"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${HOST}", "db.internal"),
        ("postgres://${HOST}:${PORT}/shop", "postgres://db.internal:5432/shop"),
        ("${MISSING:-fallback}", "fallback"),
        ("${HOST:-fallback}", "db.internal"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY}", ""),
        ("${MISSING:-}", ""),
        ("${MISSING:-a b:c}", "a b:c"),
        ("$$", "$"),
        ("$${HOST}", "${HOST}"),
        ("cost: $$5", "cost: $5"),
        ("$$$${HOST}", "$${HOST}"),
        ("$HOST stays", "$HOST stays"),
        ("price $5", "price $5"),
        ("end $", "end $"),
    ],
)
def test_interpolate(text: str, expected: str) -> None:
    assert interpolate(text, ENVIRON) == (expected, [])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "${DB_URL}",
            'environment variable "DB_URL" is not set (write ${DB_URL:-default} to give a default)',
        ),
        ("${1X}", 'invalid reference "${1X}"' + HOW_TO_REFER),
        ("${A-b}", 'invalid reference "${A-b}"' + HOW_TO_REFER),
        ("${}", 'invalid reference "${}"' + HOW_TO_REFER),
        ("abc ${HOST", 'unclosed "${" (write $$ for a literal "$")'),
    ],
)
def test_interpolate_problems(text: str, problem: str) -> None:
    assert interpolate(text, ENVIRON)[1] == [problem]


def _load(tmp_path: Path, text: str, environ: dict[str, str]) -> object:
    path = tmp_path / "conveyor.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path, environ=environ).config


def test_interpolation_reaches_every_string_value_but_not_keys(tmp_path: Path) -> None:
    text = """\
        project: shop
        services:
          api:
            run: [python, "${APP:-server.py}"]
            build: ["echo ${HOST}"]
            replicas: ${REPLICAS}
            env:
              DB_URL: postgres://${HOST}:${PORT}
              ${KEY}: literal-key
            health: {type: http, timeout: "${TIMEOUT:-3s}"}
        environments:
          staging: {listen: "127.0.0.1:${PORT}"}
        """
    config = _load(tmp_path, text, ENVIRON)
    api = config.services["api"]  # type: ignore[attr-defined]
    assert api.run == ["python", "server.py"]
    assert api.build == ["echo db.internal"]
    assert api.replicas == 3
    assert api.env == {"DB_URL": "postgres://db.internal:5432", "${KEY}": "literal-key"}
    assert api.health.timeout == 3.0
    assert config.environments["staging"].listen_port == 5432  # type: ignore[attr-defined]


def test_interpolation_uses_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_GREETING", "hi")
    path = tmp_path / "conveyor.yml"
    path.write_text(
        "project: shop\n"
        "services: {api: {run: x, env: {G: '${CONVEYOR_TEST_GREETING}'}}}\n"
        "environments: {staging: {listen: ':8080'}}\n",
        encoding="utf-8",
    )
    assert load_config(path).config.services["api"].env == {"G": "hi"}


def test_missing_variables_are_all_reported_and_hide_follow_up_errors(tmp_path: Path) -> None:
    text = """\
        project: shop
        services:
          api:
            run: x
            replicas: ${REPLICAS}
            env: {DB_URL: "${DB_URL}", TOKEN: "${TOKEN}"}
            colour: blue
        environments:
          staging: {listen: ':8080'}
        """
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text, {})
    assert caught.value.issues == [
        'services/api/replicas: environment variable "REPLICAS" is not set '
        "(write ${REPLICAS:-default} to give a default)",
        'services/api/env/DB_URL: environment variable "DB_URL" is not set '
        "(write ${DB_URL:-default} to give a default)",
        'services/api/env/TOKEN: environment variable "TOKEN" is not set '
        "(write ${TOKEN:-default} to give a default)",
        "services/api/colour: unknown key",
    ]


def test_list_items_have_index_paths(tmp_path: Path) -> None:
    text = """\
        project: shop
        services:
          api: {run: x, build: [make, "make ${TARGET}"]}
        environments:
          staging: {listen: ':8080'}
        """
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text, {})
    assert caught.value.issues == [
        'services/api/build/1: environment variable "TARGET" is not set '
        "(write ${TARGET:-default} to give a default)"
    ]


def test_secret_values_never_reach_messages(tmp_path: Path) -> None:
    text = """\
        project: shop
        services:
          api: {run: x, replicas: "${SECRET}"}
        environments:
          staging: {listen: ':8080'}
        """
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text, {"SECRET": "hunter2-is-a-long-secret-value" * 5})
    (issue,) = caught.value.issues
    assert issue.startswith("services/api/replicas: expected an integer, got ")
    assert len(issue) < 140


def _one_service(tmp_path: Path, service: str) -> Path:
    path = tmp_path / "conveyor.yml"
    text = f"project: shop\nservices: {{api: {service}}}\nenvironments: {{staging: {{listen: ':8080'}}}}\n"
    path.write_text(text, encoding="utf-8")
    return path


def test_deferred_unset_variables_are_kept_and_recorded(tmp_path: Path) -> None:
    path = _one_service(
        tmp_path, "{run: [gunicorn, '${APP}'], env: {T: '${TOKEN}', U: '${TOKEN}'}}"
    )
    loaded = load_config(path, environ={}, defer_unset=True)
    assert loaded.config.services["api"].run == ["gunicorn", "${APP}"]
    assert loaded.unset == {
        "APP": ("services/api/run/1",),
        "TOKEN": ("services/api/env/T", "services/api/env/U"),
    }
    assert loaded.unset_issues("services/api/env/")[0] == (
        'services/api/env/T: environment variable "TOKEN" is not set '
        "(write ${TOKEN:-default} to give a default)"
    )
    with pytest.raises(ConfigError) as caught:
        loaded.require_set("staging", "api")
    assert len(caught.value.issues) == 3
    with pytest.raises(ConfigError):
        load_config(path, environ={})  # the strict load of a command that starts things


def test_a_deferred_variable_that_makes_its_value_invalid_is_still_needed(tmp_path: Path) -> None:
    path = _one_service(tmp_path, "{run: x, replicas: '${REPLICAS}'}")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={}, defer_unset=True)
    assert caught.value.issues == [
        'services/api/replicas: environment variable "REPLICAS" is not set '
        "(write ${REPLICAS:-default} to give a default)"
    ]
