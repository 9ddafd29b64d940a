from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conveyor.config import (
    CommandHealth,
    HttpHealth,
    LoadedConfig,
    TcpHealth,
    load_config,
)
from conveyor.errors import EXIT_USAGE, ConfigError

FULL_EXAMPLE = """\
project: shop
releases:
  keep: 3
x-common-env: &common
  GREETING: hello
services:
  api:
    source: api
    include: [faults.json]
    build:
      - python -m compileall -q .
      - [pip, install, -r, requirements.txt]
    run: python server.py
    env:
      <<: *common
      WORKERS: 4
      DEBUG: false
    replicas: 2
    route:
      path: /api
      strip_prefix: true
    health:
      type: http
      path: /healthz
      expect_status: 204
      timeout: 500ms
      interval: 1s
      healthy_threshold: 2
    stop_timeout: 5s
    drain_timeout: 1m
    deploy_timeout: 2m30s
  web:
    run: [node, server.js]
    health: {type: command, command: "curl -f http://127.0.0.1:$PORT/"}
  worker:
    run: python worker.py
    route: {path: /, host: jobs.example.com}
environments:
  staging:
    listen: 127.0.0.1:8080
    strategy: rolling
    env: {LOG_LEVEL: debug}
    services:
      api: {replicas: 1}
  production:
    listen: ":80"
    url: https://shop.example.com
    router: caddy
    strategy:
      type: rolling
      max_surge: 25%
      max_unavailable: 1
      min_ready: 10s
    env: {LOG_LEVEL: info}
    services:
      api: {replicas: 3, env: {WORKERS: 8}}
"""

MINIMAL = """\
project: shop
services:
  api:
    run: python server.py
environments:
  staging:
    listen: 127.0.0.1:8080
"""


def write(tmp_path: Path, text: str, name: str = "conveyor.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def issues_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ=environ or {})
    return caught.value.issues


def test_full_example_loads(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, FULL_EXAMPLE), environ={})
    assert isinstance(loaded, LoadedConfig)
    assert loaded.path == (tmp_path / "conveyor.yml").resolve()
    assert loaded.root == tmp_path.resolve()
    config = loaded.config
    assert config.project == "shop"
    assert config.releases.keep == 3
    assert list(config.services) == ["api", "web", "worker"]

    api = config.services["api"]
    assert api.source == "api"
    assert loaded.source_dir("api") == (tmp_path / "api").resolve()
    assert api.include == ["faults.json"]
    assert api.build == ["python -m compileall -q .", ["pip", "install", "-r", "requirements.txt"]]
    assert api.run == "python server.py"
    assert api.env == {"GREETING": "hello", "WORKERS": "4", "DEBUG": "false"}
    assert api.replicas == 2
    assert (api.route.path, api.route.host, api.route.strip_prefix) == ("/api", None, True)
    assert api.health == HttpHealth(
        path="/healthz", expect_status=204, timeout=0.5, interval=1.0, healthy_threshold=2
    )
    assert (api.stop_timeout, api.drain_timeout, api.deploy_timeout) == (5.0, 60.0, 150.0)

    web = config.services["web"]
    assert web.run == ["node", "server.js"]
    assert isinstance(web.health, CommandHealth)
    assert web.health.command == "curl -f http://127.0.0.1:$PORT/"
    assert web.source == "."
    assert web.route.path == "/"

    staging, production = config.environments["staging"], config.environments["production"]
    assert staging.strategy.type == "rolling"
    assert (staging.strategy.max_surge, staging.strategy.max_unavailable) == (1, 0)
    assert staging.effective_url == "http://127.0.0.1:8080"
    assert production.effective_url == "https://shop.example.com"
    assert (production.listen_host, production.listen_port) == ("", 80)
    assert production.strategy.max_surge == "25%"
    assert production.strategy.max_unavailable == 1
    assert production.strategy.min_ready == 10.0
    assert production.services["api"].replicas == 3


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), environ={}).config
    api = config.services["api"]
    assert config.releases.keep == 5
    assert (api.source, api.include, api.build, api.env, api.replicas) == (".", [], [], {}, 1)
    assert (api.route.path, api.route.host, api.route.strip_prefix) == ("/", None, False)
    assert api.health == TcpHealth(timeout=2.0, interval=1.0, healthy_threshold=1)
    assert (api.stop_timeout, api.drain_timeout, api.deploy_timeout) == (10.0, 30.0, 120.0)
    staging = config.environments["staging"]
    assert (staging.router, staging.target) == ("caddy", "local")
    assert staging.url is None
    assert staging.strategy.type == "rolling"
    assert staging.strategy.min_ready == 0.0
    assert (staging.env, staging.services) == ({}, {})


def test_http_health_defaults(tmp_path: Path) -> None:
    text = MINIMAL.replace("    run: python server.py\n", "    run: x\n    health: {type: http}\n")
    health = load_config(write(tmp_path, text), environ={}).config.services["api"].health
    assert isinstance(health, HttpHealth)
    assert (health.path, health.expect_status) == ("/health", 200)


# Each case: the text of a bad conveyor.yml and the one issue it must produce.
BAD_INPUTS = [
    (
        "duration word",
        "services: {api: {run: x, health: {type: http, interval: fast}}}",
        'services/api/health/interval: expected a duration like "5s", got "fast"',
    ),
    (
        "duration bare number",
        "services: {api: {run: x, stop_timeout: 5}}",
        'services/api/stop_timeout: expected a duration like "5s", got 5',
    ),
    (
        "misspelt key",
        "services: {api: {run: x, helth: {type: tcp}}}",
        'services/api/helth: unknown key (did you mean "health"?)',
    ),
    (
        "unknown key without a match",
        "services: {api: {run: x, colour: blue}}",
        "services/api/colour: unknown key",
    ),
    (
        "misspelt top-level key",
        "services: {api: {run: x}}\nenvirons: {}",
        'environs: unknown key (did you mean "environments"?)',
    ),
    ("run missing", "services: {api: {replicas: 1}}", "services/api/run: required"),
    (
        "smoke test with neither path nor command",
        "services: {api: {run: x, smoke: [{path: /ok}, {name: nothing}]}}",
        "services/api/smoke/1: each smoke test is either path: /some/path (an HTTP GET on the "
        "new instance) or command: ...; got neither",
    ),
    (
        "smoke test with both",
        "services: {api: {run: x, smoke: [{path: /ok, command: ./smoke.sh}]}}",
        "services/api/smoke/0: each smoke test is either path: /some/path (an HTTP GET on the "
        "new instance) or command: ...; got both",
    ),
    (
        "smoke test path",
        "services: {api: {run: x, smoke: [{path: ok}]}}",
        'services/api/smoke/0/path: expected a path starting with "/", got "ok"',
    ),
    (
        "replicas zero",
        "services: {api: {run: x, replicas: 0}}",
        "services/api/replicas: expected an integer between 1 and 1000, got 0",
    ),
    (
        "replicas word",
        "services: {api: {run: x, replicas: two}}",
        'services/api/replicas: expected an integer, got "two"',
    ),
    (
        "replicas bool",
        "services: {api: {run: x, replicas: true}}",
        "services/api/replicas: expected an integer, got true",
    ),
    (
        "strategy type",
        "environments: {staging: {listen: ':8080', strategy: {type: yolo}}}",
        'environments/staging/strategy/type: expected one of "blue_green", "canary", "immediate", "recreate", "rolling", got "yolo"',
    ),
    (
        "strategy shorthand",
        "environments: {staging: {listen: ':8080', strategy: yolo}}",
        'environments/staging/strategy/type: expected one of "blue_green", "canary", "immediate", "recreate", "rolling", got "yolo"',
    ),
    (
        "max_surge",
        "environments: {staging: {listen: ':8080', strategy: {max_surge: lots}}}",
        "environments/staging/strategy/max_surge: "
        'expected an integer between 0 and 1000 or a percentage like "25%", got "lots"',
    ),
    (
        "health type",
        "services: {api: {run: x, health: {type: grpc}}}",
        'services/api/health/type: expected one of "command", "http", "tcp", got "grpc"',
    ),
    (
        "health type missing",
        "services: {api: {run: x, health: {path: /x}}}",
        'services/api/health/type: required (one of "command", "http", "tcp")',
    ),
    (
        "health key of another type",
        "services: {api: {run: x, health: {type: tcp, path: /health}}}",
        "services/api/health/path: unknown key",
    ),
    (
        "health command missing",
        "services: {api: {run: x, health: {type: command}}}",
        "services/api/health/command: required",
    ),
    (
        "health not a mapping",
        "services: {api: {run: x, health: http}}",
        'services/api/health: expected a mapping, got "http"',
    ),
    (
        "expect_status range",
        "services: {api: {run: x, health: {type: http, expect_status: 700}}}",
        "services/api/health/expect_status: expected an integer between 100 and 599, got 700",
    ),
    (
        "run wrong type",
        "services: {api: {run: {cmd: x}}}",
        "services/api/run: expected a command: a string (run by /bin/sh -c) or a list of "
        "strings (argv), got a mapping",
    ),
    (
        "run empty",
        "services: {api: {run: ''}}",
        "services/api/run: expected a command, got an empty string",
    ),
    (
        "argv item",
        "services: {api: {run: [python, [x]]}}",
        "services/api/run/1: expected a string, got a list",
    ),
    (
        "build not a list",
        "services: {api: {run: x, build: make}}",
        'services/api/build: expected a list, got "make"',
    ),
    (
        "build item",
        "services: {api: {run: x, build: [make, null]}}",
        "services/api/build/1: expected a command: a string (run by /bin/sh -c) or a list of "
        "strings (argv), got null",
    ),
    (
        "source wrong type",
        "services: {api: {run: x, source: [a]}}",
        "services/api/source: expected a path, got a list",
    ),
    (
        "absolute include",
        "services: {api: {run: x, include: [/etc/passwd]}}",
        'services/api/include/0: expected a path relative to conveyor.yml, got "/etc/passwd"',
    ),
    (
        "env not a mapping",
        "services: {api: {run: x, env: [A=1]}}",
        "services/api/env: expected a mapping, got a list",
    ),
    (
        "env value null",
        "services: {api: {run: x, env: {A: }}}",
        'services/api/env/A: expected a string, got null (write "" for an empty value)',
    ),
    (
        "env value mapping",
        "services: {api: {run: x, env: {A: {b: c}}}}",
        "services/api/env/A: expected a string, got a mapping",
    ),
    (
        "route path",
        "services: {api: {run: x, route: {path: api}}}",
        'services/api/route/path: expected a path starting with "/", got "api"',
    ),
    (
        "route path wrong type",
        "services: {api: {run: x, route: {path: 5}}}",
        "services/api/route/path: expected a string, got 5",
    ),
    (
        "strip_prefix",
        "services: {api: {run: x, route: {strip_prefix: maybe}}}",
        'services/api/route/strip_prefix: expected true or false, got "maybe"',
    ),
    (
        "route host",
        "services: {api: {run: x, route: {host: 'https://a.example.com'}}}",
        'services/api/route/host: expected a host name like "api.example.com" '
        '(no scheme, port or path), got "https://a.example.com"',
    ),
    (
        "service not a mapping",
        "services: {api: 5}",
        "services/api: expected a mapping, got 5",
    ),
    (
        "service name",
        "services: {Api: {run: x}}",
        'services/Api: invalid service name "Api": use lowercase letters, digits and "-", '
        "starting with a letter",
    ),
    (
        "environment name",
        "environments: {2nd: {listen: ':80'}}",
        'environments/2nd: invalid environment name "2nd": use lowercase letters, digits and '
        '"-", starting with a letter',
    ),
    (
        "no services",
        "services: {}",
        "services: at least one service is required",
    ),
    (
        "services a list",
        "services: [api]",
        "services: expected a mapping, got a list",
    ),
    ("listen missing", "environments: {staging: {}}", "environments/staging/listen: required"),
    (
        "listen number",
        "environments: {staging: {listen: 8080}}",
        'environments/staging/listen: expected "host:port" like "127.0.0.1:8080" '
        '(or ":8080" for all interfaces), got 8080',
    ),
    (
        "listen port range",
        "environments: {staging: {listen: '127.0.0.1:70000'}}",
        "environments/staging/listen: expected a port between 1 and 65535, got 70000",
    ),
    (
        "listen bare ipv6",
        "environments: {staging: {listen: '::1:80'}}",
        'environments/staging/listen: put an IPv6 address in brackets, like "[::1]:8080", '
        'got "::1:80"',
    ),
    (
        "router",
        "environments: {staging: {listen: ':80', router: nginx}}",
        'environments/staging/router: expected one of "caddy", "haproxy", got "nginx"',
    ),
    (
        "target",
        "environments: {staging: {listen: ':80', target: kubernetes}}",
        'environments/staging/target: expected one of "local", "ssh", got "kubernetes"',
    ),
    (
        "url scheme",
        "environments: {staging: {listen: ':80', url: 'ftp://x'}}",
        'environments/staging/url: expected a URL starting with http:// or https://, got "ftp://x"',
    ),
    (
        "override replicas",
        "environments: {staging: {listen: ':80', services: {api: {replicas: 0}}}}",
        "environments/staging/services/api/replicas: expected an integer between 1 and 1000, got 0",
    ),
    (
        "override unknown key",
        "environments: {staging: {listen: ':80', services: {api: {run: y}}}}",
        "environments/staging/services/api/run: unknown key",
    ),
    (
        "project name",
        "project: My Shop",
        'project: expected a project name of lowercase letters, digits and "-", got "My Shop"',
    ),
    (
        "releases keep",
        "releases: {keep: 0}",
        "releases/keep: expected an integer >= 1, got 0",
    ),
    (
        "database URL of an unknown kind",
        "databases: {main: {url: 'oracle://db/x'}}",
        "databases/main/url: unsupported database 'oracle' in 'oracle://db/x': expected "
        "postgresql, mysql, mariadb or sqlite",
    ),
    (
        "database URL without a database",
        "databases: {main: {url: 'postgresql://app:s3cret@db:5432/'}}",
        "databases/main/url: the database URL 'postgresql://app:***@db:5432/' names no "
        "database (…/name at the end)",
    ),
    (
        "backup verify mode",
        "databases: {main: {url: 'sqlite:///a.db', backup: {verify: full}}}",
        'databases/main/backup/verify: expected one of "read", "restore", got "full"',
    ),
    (
        "migration of an unknown database",
        "services: {api: {run: x, migrate: {command: 'alembic upgrade head', database: db}}}",
        'services/api/migrate/database: unknown database "db" (databases: none defined)',
    ),
    (
        "migration on_failure",
        "databases: {main: {url: 'sqlite:///a.db'}}\n"
        "services: {api: {run: x, migrate: {command: m, database: main, on_failure: undo}}}",
        'services/api/migrate/on_failure: expected one of "keep", "restore", got "undo"',
    ),
    (
        "environment override of an unknown database",
        "databases: {main: {url: 'sqlite:///a.db'}}\n"
        "environments: {staging: {listen: ':8080', databases: {other: {url: 'sqlite:///b.db'}}}}",
        'environments/staging/databases/other: unknown database "other" (databases: main)',
    ),
    (
        "pipeline job needs an unknown job",
        "pipeline: {jobs: {test: {run: pytest, needs: [lnt]}, lint: {run: ruff}}}",
        'pipeline/jobs/test/needs: unknown job "lnt" (jobs: lint, test)',
    ),
    (
        "pipeline jobs in a circle",
        "pipeline: {jobs: {a: {run: x, needs: [b]}, b: {run: y, needs: [a]}}}",
        "pipeline/jobs: the needs go round in a circle: a -> b -> a",
    ),
    (
        "pipeline report of an unknown kind",
        "pipeline: {jobs: {test: {run: pytest, reports: [{junitxml: r.xml}]}}}",
        "pipeline/jobs/test/reports/0: expected one of junit, cobertura, sarif, pip_audit or "
        "npm_audit, got junitxml",
    ),
    (
        "coverage gate",
        "pipeline: {jobs: {test: {run: pytest, reports: [{cobertura: c.xml, min_coverage: high}]}}}",
        "pipeline/jobs/test/reports/0/min_coverage: expected a number >= 0 or a percentage like "
        '"20%", got "high"',
    ),
    (
        "promote_from an unknown environment",
        "environments: {staging: {listen: ':8080', promote_from: qa}}",
        'environments/staging/promote_from: "qa" is not another environment (environments: none)',
    ),
    (
        "deploy window time",
        "environments: {staging: {listen: ':8080', windows: [{start: '9am', end: '17:00'}]}}",
        'environments/staging/windows/0/start: expected a time of day like "09:00", got "9am"',
    ),
    (
        "deploy window time zone",
        "environments: {staging: {listen: ':8080', windows: [{start: '09:00', end: '17:00', "
        "timezone: Mars/Olympus}]}}",
        'environments/staging/windows/0/timezone: expected a time zone like "Europe/Berlin" or '
        '"UTC", got "Mars/Olympus"',
    ),
    (
        "freeze backwards",
        "environments: {staging: {listen: ':8080', freeze: [{from: 2026-12-24, to: 2026-12-20}]}}",
        "environments/staging/freeze/0: ends (2026-12-20) before it starts (2026-12-24)",
    ),
    (
        "approvers of an unknown group",
        "environments: {staging: {listen: ':8080', approvals: {approvers: ['@sre']}}}",
        'environments/staging/approvals/approvers: unknown group "@sre" (groups: none defined)',
    ),
    (
        "notify target of two kinds",
        "notify: [{webhook: {url: 'https://hooks.example.com/x'}, slack: {webhook_url: x}}]",
        "notify/0: each notify target is one of webhook, slack, email or github; got webhook "
        "and slack",
    ),
    (
        "notify target of no kind",
        "notify: [{events: [succeeded]}]",
        "notify/0: each notify target is one of webhook, slack, email or github; got none",
    ),
    (
        "notify event unknown",
        "notify: [{webhook: {url: 'https://hooks.example.com/x'}, events: [deployed]}]",
        'notify/0/events/0: expected one of "aborted", "alert_firing", "alert_resolved", '
        '"approved", "awaiting_approval", "failed", "job_failed", "refused", "rejected", '
        '"rolled_back", "started", "succeeded", "verify_failed", got "deployed"',
    ),
    (
        "notify environment unknown",
        "notify: [{webhook: {url: 'https://hooks.example.com/x'}, environments: [prod]}]",
        'notify/0/environments: unknown environment "prod" (environments: staging)',
    ),
    (
        "email without recipients",
        "notify: [{email: {smtp: {host: mail.example.com}, from: a@example.com}}]",
        "notify/0/email/to: required",
    ),
    (
        "hook key misspelled",
        "hooks: {post_deploi: [echo]}",
        'hooks/post_deploi: unknown key (did you mean "post_deploy"?)',
    ),
    (
        "releases not a mapping",
        "releases: 5",
        "releases: expected a mapping, got 5",
    ),
]


def _with_defaults(snippet: str) -> str:
    """The minimal valid file with the snippet's top-level keys replacing its own."""
    import yaml

    data = yaml.safe_load(MINIMAL)
    data.update(yaml.safe_load(snippet))
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [pytest.param(snippet, expected, id=name) for name, snippet, expected in BAD_INPUTS],
)
def test_bad_input_gives_exact_issue(tmp_path: Path, snippet: str, expected: str) -> None:
    assert issues_of(tmp_path, _with_defaults(snippet)) == [expected]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """\
        project: shop
        services:
          api:
            replicas: 0
            health: {type: http, interval: fast}
        environments:
          staging: {listen: ':8080', strategy: yolo}
        """
    assert issues_of(tmp_path, text) == [
        "services/api/run: required",
        "services/api/replicas: expected an integer between 1 and 1000, got 0",
        'services/api/health/interval: expected a duration like "5s", got "fast"',
        'environments/staging/strategy/type: expected one of "blue_green", "canary", "immediate", "recreate", "rolling", got "yolo"',
    ]


def test_config_error_is_a_usage_error_with_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, _with_defaults("services: {api: {replicas: 1}}"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    error = caught.value
    assert error.exit_code == EXIT_USAGE
    assert error.source == str(path)
    assert error.message == f"{path}: 1 problem\n  services/api/run: required"


def test_messages_have_no_pydantic_jargon(tmp_path: Path) -> None:
    snippets = [snippet for _, snippet, _ in BAD_INPUTS]
    for snippet in snippets:
        for issue in issues_of(tmp_path, _with_defaults(snippet)):
            lowered = issue.lower()
            for word in ("pydantic", "http://errors", "input_value", "input should", "[key]"):
                assert word not in lowered, issue


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("project: shop\nservices: [a\n", "line 3, column 1: did not find expected ',' or ']'"),
        (
            "project: shop\nservices:\n\tapi: {}\n",
            "line 3, column 1: found character that cannot start any token "
            "(a tab: YAML indents with spaces only)",
        ),
        ("project: a\nproject: b\n", 'line 2, column 1: duplicate key "project"'),
        ("- project\n", "expected a mapping at the top level, got a list"),
        ("just text\n", 'expected a mapping at the top level, got "just text"'),
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
    ],
)
def test_yaml_problems(tmp_path: Path, text: str, expected: str) -> None:
    assert issues_of(tmp_path, text) == [expected]


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = """\
        project: shop
        x-service: &service {run: x, replicas: 2}
        services:
          api:
            <<: *service
            replicas: 3
        environments: {staging: {listen: ':8080'}}
        """
    config = load_config(write(tmp_path, text), environ={}).config
    assert (config.services["api"].run, config.services["api"].replicas) == ("x", 3)


def test_x_keys_are_ignored_at_every_level(tmp_path: Path) -> None:
    text = """\
        project: shop
        x-top: {anything: [1, 2]}
        releases: {keep: 2, x-why: disk}
        services:
          x-template: {not: a service}
          api:
            run: x
            x-owner: team-a
            env: {A: "1", x-comment: ignored}
            route: {path: /, x-note: 1}
            health: {type: http, x-note: 1}
        environments:
          x-draft: {listen: nonsense}
          staging:
            listen: ':8080'
            x-ticket: OPS-1
            strategy: {type: rolling, x-note: 1}
            services: {api: {replicas: 2, x-note: 1}, x-web: {replicas: 9}}
        """
    config = load_config(write(tmp_path, text), environ={}).config
    assert list(config.services) == ["api"]
    assert list(config.environments) == ["staging"]
    assert config.services["api"].env == {"A": "1"}
    assert list(config.environments["staging"].services) == ["api"]


def test_x_keys_skip_interpolation(tmp_path: Path) -> None:
    text = MINIMAL + "x-secret: ${NOT_SET}\n"
    assert load_config(write(tmp_path, text), environ={}).config.project == "shop"


# --- finding the file ---------------------------------------------------------------


def test_finds_the_file_in_the_cwd_or_a_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, MINIMAL)
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    loaded = load_config(environ={})
    assert loaded.path == (tmp_path / "conveyor.yml").resolve()
    assert loaded.root == tmp_path.resolve()


def test_finds_conveyor_yaml_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, MINIMAL, name="conveyor.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).path.name == "conveyor.yaml"


def test_nearest_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, MINIMAL)
    inner = tmp_path / "inner"
    inner.mkdir()
    write(inner, MINIMAL.replace("project: shop", "project: inner"))
    monkeypatch.chdir(inner)
    assert load_config(environ={}).config.project == "inner"


def test_no_file_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if any((d / n).exists() for d in tmp_path.parents for n in ("conveyor.yml", "conveyor.yaml")):
        pytest.skip("a parent of the temporary directory holds a conveyor.yml")
    with pytest.raises(ConfigError) as caught:
        load_config(environ={})
    assert caught.value.issues == [f"no conveyor.yml found in {tmp_path} or its parents"]
    assert caught.value.hint == "run conveyor in your project directory or pass --config PATH"


def test_explicit_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing, environ={})
    assert caught.value.issues == ["file not found"]
    assert caught.value.source == str(missing)


def test_explicit_directory(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    assert load_config(tmp_path, environ={}).path == (tmp_path / "conveyor.yml").resolve()
