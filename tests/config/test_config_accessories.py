"""`accessories:` in conveyor.yml: the model, per-environment overrides, and the rules of
`${accessories.NAME.KEY}` references (pure, no process started)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.config.accessories import AccessoryAddress, fill, references
from conveyor.config.models.accessories import fill_url
from conveyor.errors import ConfigError

BASE = """\
project: shop
accessories:
  redis:
    run: redis-server --port $PORT --dir $DATA_DIR
    url: "redis://{host}:{port}/0"
services:
  web:
    run: "python3 app.py --redis ${accessories.redis.url}"
    env: {REDIS_URL: "${accessories.redis.url}"}
environments:
  staging: {listen: "127.0.0.1:8080"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conveyor.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def issues_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    return caught.value.issues


def test_references_stay_as_written_until_start(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), environ={"PORT": "1"}).config
    web = config.services["web"]
    assert web.env["REDIS_URL"] == "${accessories.redis.url}"
    assert web.run == "python3 app.py --redis ${accessories.redis.url}"
    # The accessory's own run keeps $PORT and $DATA_DIR for its start, as an instance's.
    assert config.accessories["redis"].run == "redis-server --port $PORT --dir $DATA_DIR"
    assert config.accessories["redis"].url_template == "redis://{host}:{port}/0"


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), environ={}).config
    redis = config.accessories_for("staging")["redis"]
    assert (redis.port, redis.host, redis.health.type) == (None, None, "tcp")
    assert (redis.start_timeout, redis.stop_timeout) == (60.0, 30.0)


def test_environment_overrides_and_disables(tmp_path: Path) -> None:
    text = BASE + textwrap.indent(
        textwrap.dedent(
            """\
            production:
              listen: "127.0.0.1:8090"
              accessories: {redis: {port: 6391, env: {MAXMEMORY: 1gb}}}
            dev:
              listen: "127.0.0.1:8091"
              accessories: {redis: false}
              services: {web: {env: {REDIS_URL: "redis://127.0.0.1:6390/0"}}}
            """
        ),
        "  ",
    )
    text = text.replace('run: "python3 app.py --redis ${accessories.redis.url}"', "run: app")
    config = load_config(write(tmp_path, text), environ={}).config
    assert config.accessories_for("production")["redis"].port == 6391
    assert config.accessories_for("production")["redis"].env == {"MAXMEMORY": "1gb"}
    assert config.accessories_for("staging")["redis"].port is None
    # dev has no redis, and its web's REDIS_URL (the one the reference was in) is its own.
    assert config.accessories_for("dev") == {}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('${accessories.redis.url}"}', '${accessories.rediss.url}"}'),
            'services/web/env/REDIS_URL: unknown accessory "rediss" in '
            '"${accessories.rediss.url}" (accessories: redis)',
        ),
        (
            ('${accessories.redis.url}"}', '${accessories.redis.uri}"}'),
            'services/web/env/REDIS_URL: "${accessories.redis.uri}" has no value: '
            "use host, port, url",
        ),
        (
            ('url: "redis://{host}:{port}/0"', 'url: "redis://{hots}:{port}/0"'),
            'accessories/redis/url: unknown placeholder "{hots}" (a url template may use '
            "{host} and {port})",
        ),
        (
            ("accessories:\n  redis:", "accessories:\n  web:"),
            None,  # checked below: the service's name, and the references now unknown
        ),
    ],
)
def test_reference_and_model_errors_name_the_key(
    tmp_path: Path, change: tuple[str, str], expected: str | None
) -> None:
    found = issues_of(tmp_path, BASE.replace(*change))
    if expected is not None:
        assert found == [expected]
    else:
        assert found[0].startswith('accessories/web: a service is called "web" too')


def test_a_reference_where_it_has_no_value(tmp_path: Path) -> None:
    text = BASE.replace(
        '  staging: {listen: "127.0.0.1:8080"}',
        '  staging: {listen: "127.0.0.1:8080", url: "http://${accessories.redis.host}"}',
    )
    assert issues_of(tmp_path, text) == [
        'environments/staging/url: "${accessories.redis.host}": an accessory\'s address is '
        "filled in only in a service's run and env (and the environments' env)"
    ]


def test_a_disabled_accessory_still_referenced(tmp_path: Path) -> None:
    text = BASE.replace(
        '  staging: {listen: "127.0.0.1:8080"}',
        '  staging: {listen: "127.0.0.1:8080", accessories: {redis: false, memo: {port: 1}}}',
    ).replace('run: "python3 app.py --redis ${accessories.redis.url}"', "run: app")
    assert issues_of(tmp_path, text) == [
        'environments/staging/accessories/memo: unknown accessory "memo" (accessories: redis)',
        'services/web/env/REDIS_URL: environment "staging" has no accessory "redis" '
        '(environments/staging/accessories/redis is false), but "${accessories.redis.url}" '
        "needs it there",
    ]


def test_hosts_of_an_ssh_environment(tmp_path: Path) -> None:
    text = BASE.replace(
        '  staging: {listen: "127.0.0.1:8080"}',
        textwrap.indent(
            textwrap.dedent(
                """\
                staging: {listen: "127.0.0.1:8080", accessories: {redis: {host: db1}}}
                fleet:
                  listen: "127.0.0.1:8081"
                  target: ssh
                  hosts: [{name: app1, address: 10.0.0.5, user: deploy}]
                  accessories: {redis: {host: db9}}
                """
            ),
            "  ",
        ).rstrip("\n"),
    )
    assert issues_of(tmp_path, text) == [
        'environments/staging/accessories/redis/host: environment "staging" runs on this '
        "machine (target: local), which has no other hosts",
        'environments/fleet/accessories/redis/host: "db9" is not a host of environment '
        '"fleet" (hosts: app1)',
    ]


def test_overrides_keep_false_or_a_mapping(tmp_path: Path) -> None:
    text = BASE.replace(
        '  staging: {listen: "127.0.0.1:8080"}',
        '  staging: {listen: "127.0.0.1:8080", accessories: {redis: {port: 99999}}}',
    )
    assert issues_of(tmp_path, text) == [
        "environments/staging/accessories/redis/port: expected an integer between 1 and "
        "65535, got 99999"
    ]


def test_fill_and_urls() -> None:
    redis = AccessoryAddress(
        "10.0.0.5", 6390, fill_url("redis://{host}:{port}/0", "10.0.0.5", 6390)
    )
    text = "h=${accessories.redis.host} p=${accessories.redis.port} u=${accessories.redis.url}"
    assert fill(text, {"redis": redis}) == "h=10.0.0.5 p=6390 u=redis://10.0.0.5:6390/0"
    assert fill("${accessories.other.url} $PORT", {"redis": redis}) == (
        "${accessories.other.url} $PORT"
    )
    assert references(text) == [("redis", "host"), ("redis", "port"), ("redis", "url")]
    assert fill_url("{host}:{port}", "::1", 7000) == "[::1]:7000"
