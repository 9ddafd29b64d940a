from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.errors import ConfigError

SERVICES = """\
services:
  api: {run: x, route: {path: /api}}
  web: {run: y}
"""


def issues_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "conveyor.yml"
    path.write_text("project: shop\n" + textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return caught.value.issues


def loads(tmp_path: Path, text: str) -> None:
    path = tmp_path / "conveyor.yml"
    path.write_text("project: shop\n" + textwrap.dedent(text), encoding="utf-8")
    load_config(path, environ={})


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        (":8080", "127.0.0.1:8080"),
        ("127.0.0.1:8080", "0.0.0.0:8080"),
        ("[::1]:8080", "[::]:8080"),
        ("localhost:8080", "127.0.0.1:8080"),
    ],
)
def test_listen_port_clash(tmp_path: Path, first: str, second: str) -> None:
    text = SERVICES + f"environments:\n  staging: {{listen: '{first}'}}\n"
    text += f"  production: {{listen: '{second}'}}\n"
    assert issues_of(tmp_path, text) == [
        'environments/production/listen: port 8080 is already used by environment "staging"'
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("127.0.0.1:8080", "127.0.0.1:8081"),
        ("127.0.0.1:8080", "127.0.0.2:8080"),
        ("127.0.0.1:8080", "[::1]:8080"),
    ],
)
def test_listen_no_clash(tmp_path: Path, first: str, second: str) -> None:
    text = SERVICES + f"environments:\n  staging: {{listen: '{first}'}}\n"
    text += f"  production: {{listen: '{second}'}}\n"
    loads(tmp_path, text)


@pytest.mark.parametrize(
    ("api_route", "web_route", "expected"),
    [
        ("{path: /api}", "{path: /api}", "host *, path /api"),
        ("{path: /api}", "{path: /api/}", "host *, path /api"),
        ("{strip_prefix: false}", "{path: /}", "host *, path /"),
        ("{host: a.example.com}", "{host: A.example.com}", "host a.example.com, path /"),
    ],
)
def test_same_route(tmp_path: Path, api_route: str, web_route: str, expected: str) -> None:
    text = f"""\
        services:
          api: {{run: x, route: {api_route}}}
          web: {{run: y, route: {web_route}}}
        environments:
          staging: {{listen: ':8080'}}
        """
    assert issues_of(tmp_path, text) == [
        f'services/web/route: same route as service "api" ({expected})'
    ]


@pytest.mark.parametrize(
    ("api_route", "web_route"),
    [
        ("{path: /api}", "{path: /}"),
        ("{host: a.example.com}", "{path: /}"),
        ("{host: a.example.com}", "{host: b.example.com}"),
    ],
)
def test_different_routes(tmp_path: Path, api_route: str, web_route: str) -> None:
    text = f"""\
        services:
          api: {{run: x, route: {api_route}}}
          web: {{run: y, route: {web_route}}}
        environments:
          staging: {{listen: ':8080'}}
        """
    loads(tmp_path, text)


def test_unknown_service_override(tmp_path: Path) -> None:
    text = (
        SERVICES + "environments:\n  staging: {listen: ':8080', services: {apii: {replicas: 2}}}\n"
    )
    assert issues_of(tmp_path, text) == [
        'environments/staging/services/apii: unknown service "apii" (services are: api, web)'
    ]


@pytest.mark.parametrize(
    ("strategy", "ok"),
    [
        ("{max_surge: 0, max_unavailable: 0}", False),
        ("{max_surge: 0%, max_unavailable: 0}", False),
        ("{max_surge: 0, max_unavailable: 1}", True),
        ("{max_surge: 0, max_unavailable: 25%}", True),
        ("{type: immediate, max_surge: 0}", True),
    ],
)
def test_rolling_must_be_able_to_progress(tmp_path: Path, strategy: str, ok: bool) -> None:
    text = SERVICES + f"environments:\n  staging: {{listen: ':8080', strategy: {strategy}}}\n"
    if ok:
        loads(tmp_path, text)
    else:
        assert issues_of(tmp_path, text) == [
            "environments/staging/strategy: max_surge and max_unavailable are both 0, so a "
            "rolling deploy could never replace an instance (set max_surge to 1)"
        ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "services: {}\nenvironments: {s: {listen: ':80'}}\n",
            "services: at least one service is required",
        ),
        (SERVICES + "environments: {}\n", "environments: at least one environment is required"),
        (SERVICES, "environments: required"),
        ("environments: {s: {listen: ':80'}}\n", "services: required"),
    ],
)
def test_at_least_one_service_and_environment(tmp_path: Path, text: str, expected: str) -> None:
    assert issues_of(tmp_path, text) == [expected]


def test_all_rule_violations_are_reported_together(tmp_path: Path) -> None:
    text = """\
        services:
          api: {run: x, route: {path: /api}}
          web: {run: y, route: {path: /api}}
        environments:
          staging: {listen: ':8080', services: {apii: {replicas: 2}}}
          production: {listen: '127.0.0.1:8080'}
        """
    assert issues_of(tmp_path, text) == [
        'services/web/route: same route as service "api" (host *, path /api)',
        'environments/staging/services/apii: unknown service "apii" (services are: api, web)',
        'environments/production/listen: port 8080 is already used by environment "staging"',
    ]
