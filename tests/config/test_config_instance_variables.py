"""Instance variables ($PORT, ${PORT}, CONVEYOR_*, DATA_DIR): kept when the config is read,
filled in when each instance starts; config-time ${VAR} stays what it was."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.config.models import Config
from conveyor.environ import expand_env, expand_instance_variables, instance_argv
from conveyor.errors import ConfigError

AT_START = {"PORT": "24001", "HOST": "127.0.0.1", "CONVEYOR_RELEASE": "r1", "DATA_DIR": "/d"}


def _load(tmp_path: Path, text: str, environ: dict[str, str]) -> Config:
    path = tmp_path / "conveyor.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path, environ=environ).config


PROCFILE_STYLE = """\
    project: shop
    services:
      web:
        run: gunicorn -b 127.0.0.1:$PORT app.wsgi
      api:
        run: [gunicorn, -b, "127.0.0.1:${PORT}", "--name=${CONVEYOR_RELEASE}", app.wsgi]
        env: {DATABASE_PATH: "${DATA_DIR}/db.sqlite3", GREETING: "${GREETING:-hi}"}
        route: {path: /api}
        health: {type: command, command: [curl, -f, "http://${HOST}:${PORT:-80}/"]}
        smoke:
          - {command: "curl -f http://127.0.0.1:${PORT}/"}
    environments:
      staging: {listen: "127.0.0.1:8080"}
    """


@pytest.mark.parametrize("environ", [{}, {"PORT": "3000", "HOST": "laptop"}])
def test_a_procfile_style_config_loads_and_keeps_the_instance_variables(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    # An unset PORT is no error; a PORT in the deployer's shell never reaches a command.
    config = _load(tmp_path, PROCFILE_STYLE, environ)
    assert config.services["web"].run == "gunicorn -b 127.0.0.1:$PORT app.wsgi"
    api = config.services["api"]
    assert api.run == [
        "gunicorn",
        "-b",
        "127.0.0.1:${PORT}",
        "--name=${CONVEYOR_RELEASE}",
        "app.wsgi",
    ]
    assert api.env == {"DATABASE_PATH": "${DATA_DIR}/db.sqlite3", "GREETING": "hi"}
    assert api.health.command == ["curl", "-f", "http://${HOST}:${PORT:-80}/"]  # type: ignore[union-attr]
    assert api.smoke[0].command == "curl -f http://127.0.0.1:${PORT}/"


def test_at_start_a_list_gets_the_values_and_a_shell_string_is_left_to_the_shell() -> None:
    argv = ["gunicorn", "-b", "127.0.0.1:${PORT}", "--bind=[::1]:$PORT", "${CONVEYOR_RELEASE}"]
    assert instance_argv(argv, AT_START) == [
        "gunicorn",
        "-b",
        "127.0.0.1:24001",
        "--bind=[::1]:24001",
        "r1",
    ]
    shell = "exec gunicorn -b 127.0.0.1:$PORT app.wsgi"
    assert instance_argv(shell, AT_START) == ["/bin/sh", "-c", shell]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$PORT", "24001"),
        ("${PORT}", "24001"),
        ("${PORT:-8000}", "24001"),
        ("${CONVEYOR_ENV:-dev}", "dev"),  # no value: the default
        ("${CONVEYOR_ENV}", "${CONVEYOR_ENV}"),  # no value, no default: as written
        ("$HOME and ${SECRET}", "$HOME and ${SECRET}"),  # not an instance variable
        ("$PORTS $PORT_X", "$PORTS $PORT_X"),
        ("no dollar", "no dollar"),
    ],
)
def test_expand_instance_variables(text: str, expected: str) -> None:
    assert expand_instance_variables(text, AT_START) == expected


def test_env_values_get_the_instance_variables_of_the_same_env() -> None:
    env = {"DATA_DIR": "/data/web", "PORT": "24001", "DB": "sqlite:///${DATA_DIR}/db", "P": "$PORT"}
    assert expand_env(env) == {**env, "DB": "sqlite:////data/web/db", "P": "24001"}


def test_an_instance_variable_outside_the_instance_says_where_it_works(tmp_path: Path) -> None:
    text = """\
        project: shop
        services:
          api: {run: x, build: ["echo ${PORT}"]}
        environments:
          staging: {listen: "127.0.0.1:${PORT}"}
        """
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text, {})
    assert len(caught.value.issues) == 2
    for issue in caught.value.issues:
        assert '"PORT" is given to each instance when it starts' in issue
        assert "run, env, health.command or smoke commands" in issue
        assert ":-default" not in issue  # ${PORT:-default} would hard-code the default
