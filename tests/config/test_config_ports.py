"""`ports`: the range instance ports come from, for the project and per environment."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.errors import ConfigError

BASE = """\
    project: shop
    services:
      api: {run: x}
    environments:
      staging: {listen: "127.0.0.1:8080"%s}
      production: {listen: "127.0.0.1:8090"}
    """


def _load(tmp_path: Path, top: str = "", staging: str = ""):
    path = tmp_path / "conveyor.yml"
    path.write_text(top + textwrap.dedent(BASE % staging), encoding="utf-8")
    return load_config(path, environ={}).config


def test_the_default_range_is_20000_to_29999(tmp_path: Path) -> None:
    config = _load(tmp_path)
    assert config.ports_for("staging") == range(20000, 30000)


def test_the_project_range_and_an_environment_s_own(tmp_path: Path) -> None:
    config = _load(tmp_path, top='ports: "31000 - 31099"\n', staging=', ports: "40000-40009"')
    assert config.ports == "31000-31099"
    assert config.ports_for("production") == range(31000, 31100)
    assert config.ports_for("staging") == range(40000, 40010)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"30000-20000"', "the range starts above its end: 30000-20000 (write 20000-30000)"),
        ('"20000-70000"', "expected ports between 1 and 65535, got 20000-70000"),
        ('"0-100"', "expected ports between 1 and 65535, got 0-100"),
        ('"20000"', 'expected a port range "LOW-HIGH" like "20000-29999", got "20000"'),
        ("[1, 2]", 'expected a port range "LOW-HIGH" like "20000-29999", got a list'),
    ],
)
def test_a_bad_range_names_the_key_and_what_is_wrong(
    tmp_path: Path, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, staging=f", ports: {value}")
    assert caught.value.issues == [f"environments/staging/ports: {message}"]
