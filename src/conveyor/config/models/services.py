"""Services: what a release is built from, how its instances run, and their route."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
)

from conveyor.config import hosts as on_hosts
from conveyor.config.durations import Duration, describe_value, problem
from conveyor.config.limits import MAX_REPLICAS
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.databases import MigrateConfig
from conveyor.config.models.health import HealthConfig, SmokeTest
from conveyor.config.models.strategies import (
    StrategySpec,
    _strategy_schema,
    _strategy_shorthand,
)
from conveyor.config.models.values import (
    Command,
    Env,
    ProjectPath,
    RelativePath,
    ReplicaCount,
    ServiceName,
    _check_relative_path,
)


def _left_out(schema: dict[str, Any]) -> None:
    """The schema of an optional key as the file writes it: the key, or no key (null, which
    only stands for "left out" here, is not offered)."""
    options = schema.pop("anyOf", None)
    if options is not None:
        schema.pop("default", None)
        schema.update(next(o for o in options if o.get("type") != "null"))


def _left_out_strategy(schema: dict[str, Any]) -> None:
    _left_out(schema)
    _strategy_schema(schema)


StopSignal = Literal["TERM", "INT", "QUIT", "HUP", "USR1", "USR2"]

_ROUTE_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


class RouteConfig(_Model):
    """Which requests of the environment's listener reach this service."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        "/",
        description='Path prefix the service receives, starting with "/". "/" matches everything.',
    )
    host: str | None = Field(
        None,
        description='Host name the request must carry (e.g. "api.example.com", or '
        '"*.example.com"); null matches any host.',
    )
    strip_prefix: bool = Field(
        False,
        description="Remove the path prefix before passing the request to the service.",
    )

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise problem(f'expected a path starting with "/", got {describe_value(value)}')
        return value

    @field_validator("host")
    @classmethod
    def _host_is_a_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.strip().lower()
        if not _ROUTE_HOST.match(host):
            raise problem(
                'expected a host name like "api.example.com" (no scheme, port or path), '
                f"got {describe_value(value)}"
            )
        return host


def _check_release_path(value: object) -> str:
    text = _check_relative_path(value)
    parts = PurePosixPath(text).parts
    if ".." in parts:
        raise problem(f"expected a path inside the release, got {describe_value(value)}")
    return PurePosixPath(text).as_posix()


ReleasePath = Annotated[
    str, PlainValidator(_check_release_path), WithJsonSchema({"type": "string", "minLength": 1})
]


class DependenciesConfig(_Model):
    """What installs a service's dependencies, and what they are made of: a release whose
    `files` are unchanged gets the previous release's `paths` as hard links instead."""

    model_config = ConfigDict(extra="forbid")

    paths: list[ReleasePath] = Field(
        min_length=1,
        description='What the install creates in the release, e.g. [".venv"] or ["node_modules"].',
    )
    files: list[ReleasePath] = Field(
        min_length=1,
        description="The files that decide them (lock or requirements files), relative to "
        'the service source, e.g. ["requirements.txt"] or ["package-lock.json"].',
    )
    install: list[Command] = Field(
        min_length=1,
        description="Commands that install them, run in the release directory before `build` "
        "when no earlier release has the same files.",
    )


def _route_not_empty(value: object) -> object:
    if value == {}:
        raise problem(
            'an empty route: give a path (like "/api") or a host, or leave route out to '
            'receive every request (path "/")'
        )
    return value


class ServiceConfig(_Model):
    """A program Conveyor builds into releases and runs as instances behind the router."""

    model_config = ConfigDict(extra="forbid")

    source: ProjectPath = Field(
        ".",
        description="Directory with the service's code, relative to conveyor.yml and inside "
        "its directory.",
    )
    include: list[RelativePath] = Field(
        default_factory=list,
        description="Extra files or directories, relative to conveyor.yml, copied into the "
        "release root when they exist.",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description='Patterns of files left out of the release (gitignore-like: "tests/", '
        '"*.md", "docs/**"). The config file and .conveyor/ are always left out.',
    )
    dependencies: DependenciesConfig | None = Field(
        None,
        description="Dependency install (a virtualenv, node_modules) reused from the previous "
        "release, by hard links, while its lock or requirements files are unchanged.",
    )
    build: list[Command] = Field(
        default_factory=list,
        description="Commands run in the release directory to build it, in order, with the "
        "service's env. Each is a string (run by /bin/sh -c) or a list of strings (argv).",
    )
    build_cache: list[ReleasePath] = Field(
        default_factory=list,
        description='Directories the build commands keep between builds (Next.js: ".next/cache",'
        " where Turbopack caches): copied into a new release before its build commands run, "
        "and taken from it once they succeed, before any instance runs.",
    )
    writable: list[ReleasePath] = Field(
        default_factory=list,
        description="Directories of the release the app writes to at run time (e.g. Next.js's "
        '".next/cache"): left writable and out of the release digest. Everything else is sealed.',
    )
    run: Command = Field(
        description="Command that starts one instance: a string (run by /bin/sh -c) or a list "
        "of strings (argv). It must listen on the port given in $PORT. $PORT, ${PORT} and the "
        "other instance variables (HOST, CONVEYOR_RELEASE, CONVEYOR_ENV, CONVEYOR_SERVICE, "
        "CONVEYOR_INSTANCE, DATA_DIR) are filled in when each instance starts."
    )
    env: Env = Field(
        default_factory=dict,
        description="Environment variables of every instance. Numbers and booleans become "
        "strings. Environments can add to and override them.",
    )
    run_as: str | None = Field(
        None,
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="The user the service's processes (instances, migrations, one-off "
        'commands) run as when Conveyor runs as root (default "conveyor", a system user '
        "created on first use). Ignored when Conveyor does not run as root, unless it names "
        "another user (an error then).",
    )
    replicas: ReplicaCount = Field(
        1, description=f"How many instances run (at least 1, at most {MAX_REPLICAS})."
    )
    route: Annotated[RouteConfig | None, BeforeValidator(_route_not_empty)] = Field(
        None,
        description="Which requests reach the service. Left out: the service named `web` (or "
        'the only service) gets path "/", any host; every other service is a worker '
        "(no port, no traffic).",
        json_schema_extra=_left_out,
    )
    health: HealthConfig | None = Field(
        None,
        description='How to tell an instance is healthy: "type" is "http", "tcp" or "command". '
        "Left out: {type: tcp} for a service that receives requests; for a worker, its "
        "process running for min_ready. A worker takes only a command check.",
        json_schema_extra=_left_out,
    )
    stop_timeout: Duration = _duration_field(
        10.0,
        "How long an instance has to exit after its stop signal before it gets SIGKILL "
        "(a Celery worker needs as long as its longest task)",
    )
    stop_signal: StopSignal = Field(
        "TERM",
        description='The signal that asks an instance to stop: "TERM" (Celery\'s warm '
        'shutdown), "INT", "QUIT", "HUP", "USR1" or "USR2"; SIGKILL follows after stop_timeout.',
    )
    singleton: bool = Field(
        False,
        description="Never two instances at once, in any deploy, rollback, abort or resume, "
        "on any host (a Celery beat scheduler): replicas must be 1, and a new instance starts "
        "only once the old one stopped (the recreate strategy, always).",
    )
    after: list[ServiceName] = Field(
        default_factory=list,
        description="Services of the project a deploy handles before this one (e.g. [web]: "
        "the web service first, then the workers).",
    )
    strategy: Annotated[StrategySpec | None, BeforeValidator(_strategy_shorthand)] = Field(
        None,
        description="This service's deploy strategy, over the environment's (a worker rolls "
        "while the web service runs a canary). Workers cannot take canary or blue_green.",
        json_schema_extra=_left_out_strategy,
    )
    drain_timeout: Duration = _duration_field(
        30.0,
        "How long in-flight requests may take to finish once an instance stops receiving traffic",
    )
    deploy_timeout: Duration = _duration_field(
        120.0,
        "How long a new instance has to become healthy before the deploy fails and rolls back",
    )
    smoke: list[SmokeTest] = Field(
        default_factory=list,
        description="Tests run once per deploy on the first healthy instance of the new "
        "release, before it gets any traffic; a failure rolls the deploy back.",
    )
    migrate: MigrateConfig | None = Field(
        None,
        description="Migration run before any instance of a new release gets traffic, after a "
        "verified backup of its database.",
    )
    roles: list[on_hosts.Role] = on_hosts.roles_field()
