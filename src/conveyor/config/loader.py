"""Find, read, interpolate and validate `conveyor.yml`.

Every problem becomes one `key/path: message` line of a `ConfigError`; all
problems of a file are reported at once. Runs on every CLI call, so it stays
light: PyYAML and pydantic only.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from conveyor.config import accessories, hosts
from conveyor.config.cache import RecordingEnviron, remember
from conveyor.config.durations import ERROR_TYPE, FROM_FILE, describe_value
from conveyor.config.kinds import is_zero_step, kind_issues
from conveyor.config.limits import shape_issue
from conveyor.config.locate import CONFIG_NAMES, find_config, locate_config
from conveyor.config.models import (
    BlueGreenStrategy,
    CanaryStrategy,
    ComparativeConfig,
    Config,
    RouteConfig,
    StrategyConfig,
    StrategySpec,
    parse_listen,
)
from conveyor.config.reading import read_config_text
from conveyor.environ import INSTANCE_VARIABLES
from conveyor.errors import ConfigError

__all__ = [
    "CONFIG_NAMES",
    "LoadedConfig",
    "find_config",
    "interpolate",
    "load_config",
    "parse_config",
]

KeyPath = list[str | int]


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from."""

    config: Config
    path: Path
    """The conveyor.yml file, absolute."""
    root: Path
    """Its directory: paths in the config are relative to it."""

    unset: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """With `defer_unset`: each unset variable -> the key paths that use it, where the
    reference was kept as written (`${NAME}`)."""

    def source_dir(self, service: str) -> Path:
        """The absolute source directory of `service`."""
        return (self.root / self.config.service(service).source).resolve()

    def unset_issues(self, *prefixes: str) -> list[str]:
        """One `key/path: ...` line per use of an unset variable (under `prefixes`, e.g.
        "services/api/", when given), as a strict load reports them."""
        return [
            f"{where}: {_unset(name)}"
            for name, paths in self.unset.items()
            for where in paths
            if not prefixes or where.startswith(prefixes)
        ]

    def require_set(self, environment: str, service: str) -> None:
        """Raise `ConfigError` when what starts `service` in `environment` (its command,
        env, checks) uses a variable that is not set; nothing may start with `${NAME}`."""
        issues = self.unset_issues(
            f"services/{service}/",
            f"environments/{environment}/env/",
            f"environments/{environment}/services/{service}/",
        )
        if issues:
            raise ConfigError(issues, source=str(self.path), hint=UNSET_HINT)


UNSET_HINT = (
    "set the variables in the environment of the conveyor command (or give defaults: "
    "${NAME:-default}); commands that start nothing (status, down, history, explain, "
    "validate) work without them"
)


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    defer_unset: bool = False,
) -> LoadedConfig:
    """Read and validate a conveyor.yml; raises `ConfigError` listing every problem.

    Without `path`, the file is looked for in the current directory and its
    parents. `environ` (default `os.environ`) feeds `${VAR}` interpolation.
    With `defer_unset` (commands that start nothing), a string value using an
    unset variable keeps `${NAME}` as written and the use is recorded in
    `LoadedConfig.unset` instead of being an error; a value that is then
    invalid (`replicas: ${N}`) still is one.

    A valid config also refreshes the summary that `conveyor status` reads
    instead of loading the file again (see `conveyor.config.cache`).
    """
    path, source = locate_config(path)
    text = read_config_text(path, source)

    recording = RecordingEnviron(os.environ if environ is None else environ)
    unset: dict[str, list[str]] | None = {} if defer_unset else None
    config = _parse(text, recording, source, unset)
    absolute = path.resolve()
    loaded = LoadedConfig(
        config=config,
        path=absolute,
        root=absolute.parent,
        unset={name: tuple(paths) for name, paths in (unset or {}).items()},
    )
    remember(loaded, text, recording)
    return loaded


def parse_config(text: str, environ: Mapping[str, str], source: str = "conveyor.yml") -> Config:
    """Validate the YAML `text` of a conveyor.yml; raises `ConfigError`."""
    return _parse(text, environ, source, None)


def _parse(
    text: str, environ: Mapping[str, str], source: str, unset: dict[str, list[str]] | None
) -> Config:
    """`parse_config`; with `unset`, uses of unset variables are recorded there (name ->
    key paths) and kept as written instead of being problems."""
    data = _read_yaml(text, source)
    data = _strip_extensions(data)

    interpolation_issues: list[tuple[KeyPath, str]] = []
    kept: list[tuple[KeyPath, str]] | None = [] if unset is not None else None
    data = _interpolate(data, [], environ, interpolation_issues, kept)
    issues = [_line(p, m) for p, m in interpolation_issues]
    failed = [p for p, _ in interpolation_issues]
    for where, name in kept or ():
        assert unset is not None
        unset.setdefault(name, []).append("/".join(str(p) for p in where))

    try:
        config = Config.model_validate(data, context={FROM_FILE: True})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            where, message = _translate(error)
            # A value that could not be interpolated was validated as ""; its errors are noise.
            if any(where[: len(p)] == p for p in failed):
                continue
            # A kept ${NAME} that makes its value invalid: the variable is needed after all.
            needed = [_line(p, _unset(n)) for p, n in kept or () if where[: len(p)] == p]
            for line in needed or [_line(where, message)]:
                if line not in issues:
                    issues.append(line)
        raise ConfigError(issues, source=source) from None
    if issues:
        raise ConfigError(issues, source=source)

    issues = _cross_field_issues(config)
    if issues:
        raise ConfigError(issues, source=source)
    return config


def _line(where: KeyPath, message: str) -> str:
    return f"{'/'.join(str(p) for p in where)}: {message}" if where else message


# --- YAML ------------------------------------------------------------------------------


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {describe_value(key)}", key_node.start_mark
                )
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A scalar YAML reads as a number or date may still not be one (2024-02-30, an
        # integer of 5,000 digits): say where, instead of a ValueError traceback.
        shown = describe_value(node.value) if isinstance(node.value, str) else "a value"
        try:
            value = super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            reason = str(exc).split(";")[0]  # not Python's advice on sys.set_int_max_str_digits
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown}: {reason}", node.start_mark
            ) from None
        # No setting needs more than 64 bits; bigger ones break float() and even repr().
        if type(value) is int and not -_LARGEST_INT <= value <= _LARGEST_INT:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{shown} is too large a number (at most {_LARGEST_INT})",
                node.start_mark,
            )
        return value


_LARGEST_INT = 2**63 - 1


def _read_yaml(text: str, source: str) -> dict[Any, Any]:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        message = str(exc.problem)
        if mark is None:
            raise ConfigError([message], source=source) from None
        lines = text.splitlines()
        if mark.line < len(lines) and lines[mark.line][mark.column : mark.column + 1] == "\t":
            message += " (a tab: YAML indents with spaces only)"
        raise ConfigError(
            [f"line {mark.line + 1}, column {mark.column + 1}: {message}"], source=source
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"invalid YAML: {exc}"], source=source) from None
    if data is None:
        raise ConfigError(["the file is empty"], source=source)
    if not isinstance(data, dict):
        raise ConfigError(
            [f"expected a mapping at the top level, got {describe_value(data)}"], source=source
        )
    shape = shape_issue(data)
    if shape is not None:
        raise ConfigError([_line(*shape)], source=source)
    return data


def _strip_extensions(value: Any) -> Any:
    """Drop `x-...` keys at every level: they hold YAML anchors and tool settings."""
    if isinstance(value, dict):
        return {
            k: _strip_extensions(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.startswith("x-"))
        }
    if isinstance(value, list):
        return [_strip_extensions(v) for v in value]
    return value


# --- interpolation ---------------------------------------------------------------------

_REFERENCE = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<body>[^}]*)\}|(?P<open>\{))")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


def referenced_variables(text: str) -> set[str]:
    """The names of the variables `text` refers to as `${VAR}` or `${VAR:-default}`."""
    names = set()
    for match in _REFERENCE.finditer(text):
        body = _BODY.fullmatch(match.group("body") or "")
        if body is not None:
            names.add(body.group("name"))
    return names


def interpolate(
    text: str,
    environ: Mapping[str, str],
    deferred: Collection[str] = (),
    kept: list[str] | None = None,
    accessory_references: bool = False,
) -> tuple[str, list[str]]:
    """Expand `${VAR}`, `${VAR:-default}` and `$$` in `text`; returns (result, problems).

    `${VAR:-default}` uses the default when VAR is unset or empty, like the
    shell. A `$` not followed by `{` or `$` stays as it is, and so do the
    references to the `deferred` names (filled in later, at instance start).
    With `kept`, an unset VAR without a default is no problem: its reference
    stays as written and its name is appended to `kept`. With `accessory_references`,
    `${accessories.NAME.KEY}` stays as written (filled in at start); without, it is a
    problem.
    """
    problems: list[str] = []

    def expand(match: re.Match[str]) -> str:
        if match.group("dollar"):
            return "$"
        if match.group("open"):
            problems.append('unclosed "${" (write $$ for a literal "$")')
            return ""
        body = match.group("body")
        if body.startswith(accessories.PREFIX):
            if not accessory_references:
                problems.append(accessories.misplaced(body))
            return match.group(0)
        parsed = _BODY.fullmatch(body)
        if parsed is None:
            problems.append(
                f"invalid reference {describe_value('${' + body + '}')} "
                '(write ${NAME} or ${NAME:-default}, or $$ for a literal "$")'
            )
            return ""
        name, default = parsed.group("name"), parsed.group("default")
        if name in deferred:
            return match.group(0)
        value = environ.get(name)
        if default is not None:
            return value if value else default
        if value is None:
            if kept is not None:
                kept.append(name)
                return match.group(0)
            problems.append(_unset(name))
            return ""
        return value

    if "$" not in text:
        return text, problems
    return _REFERENCE.sub(expand, text), problems


def _unset(name: str) -> str:
    if name in INSTANCE_VARIABLES:
        return (
            f'"{name}" is given to each instance when it starts: write ${name} or ${{{name}}} '
            "in a service's run, env, health.command or smoke commands; it has no value "
            "anywhere else"
        )
    return (
        f'environment variable "{name}" is not set (write ${{{name}:-default}} to give a default)'
    )


def _deferred(where: KeyPath, value: str, environ: Mapping[str, str]) -> Collection[str]:
    """The instance variables left for instance start in the value at `where`.

    In the commands of an instance (`run`, `health.command`, `smoke` commands)
    all of them: the deployer's own $PORT must never reach an instance. In an
    `env` value, those the deployer's environment does not set, so that
    `${DATA_DIR}/db.sqlite3` works and a config-time `${HOST}` keeps working.
    """
    if len(where) >= 3 and where[0] in ("services", "accessories"):
        key = where[2]
        if (
            key == "run"
            or (key == "health" and where[3:4] == ["command"])
            or (key == "smoke" and where[4:5] == ["command"])
        ):
            return INSTANCE_VARIABLES
        in_env = key == "env"
    elif len(where) >= 3 and where[0] == "environments":
        in_env = where[2] == "env" or (
            where[2] in ("services", "accessories") and where[4:5] == ["env"]
        )
    else:
        in_env = False
    # Only the names the value mentions are looked up: each lookup joins the cache key.
    return [n for n in INSTANCE_VARIABLES if n in value and n not in environ] if in_env else ()


def _interpolate(
    value: Any,
    where: KeyPath,
    environ: Mapping[str, str],
    issues: list[tuple[KeyPath, str]],
    kept: list[tuple[KeyPath, str]] | None = None,
) -> Any:
    if isinstance(value, str):
        deferred = _deferred(where, value, environ) if "$" in value else ()
        names: list[str] | None = [] if kept is not None else None
        result, problems = interpolate(
            value, environ, deferred, names, accessory_references=accessories.allowed_at(where)
        )
        issues.extend((where, p) for p in problems)
        if kept is not None and names:
            kept.extend((where, n) for n in names)
        return result
    if isinstance(value, dict):
        return {k: _interpolate(v, [*where, k], environ, issues, kept) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, [*where, i], environ, issues, kept) for i, v in enumerate(value)]
    return value


# --- pydantic errors -> messages -------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tags(model: Any) -> tuple[Any, ...]:
    field = model.model_fields.get("type")
    return get_args(field.annotation) if field is not None else ()


def _tag_member(tp: Any, tag: object) -> Any:
    """The model of a discriminated union whose `type` is `tag` (or that is tagged `tag`
    with pydantic's `Tag`, for unions told apart by another key), if any."""
    for member in get_args(tp):
        if _is_model(member) and tag in _tags(member):
            return member
        if get_origin(member) is Annotated:
            model, *metadata = get_args(member)
            if any(isinstance(m, Tag) and m.tag == tag for m in metadata):
                return model
    return None


def _walk(loc: tuple[str | int, ...]) -> tuple[KeyPath, Any, Any]:
    """Follow an error location through the models.

    Returns the path as the file spells it (union tags dropped), the type holding
    the last element and the type of the last element (None where unknown).
    """
    where: KeyPath = []
    parent: Any = None
    tp: Any = Config
    for part in loc:
        if part == "[key]":
            continue
        tp = _unwrap(tp)
        if get_origin(tp) in (Union, types.UnionType):
            member = _tag_member(tp, part)
            if member is not None:
                tp = member
                continue
        parent = tp
        where.append(part)
        if _is_model(tp):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            tp = field.annotation if field is not None else None
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) is list:
            tp = get_args(tp)[0]
        else:
            tp = None
    return where, parent, _unwrap(tp)


def _quoted_list(values: list[str]) -> str:
    return ", ".join(f'"{v}"' for v in sorted(values))


def _one_of(values: list[str], got: object) -> str:
    if len(values) == 1:
        return f'expected "{values[0]}", got {describe_value(got)}'
    return f"expected one of {_quoted_list(values)}, got {describe_value(got)}"


_EXPECTED = {
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def _translate(error: ErrorDetails) -> tuple[KeyPath, str]:
    kind = error["type"]
    value = error.get("input")
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    where, parent, tp = _walk(tuple(error["loc"]))

    if kind == ERROR_TYPE:
        at = ctx.get("at")
        if at is not None:
            where = [*where, at]
        return where, str(ctx["message"])
    if kind == "missing":
        return where, "required"
    if kind == "extra_forbidden":
        known = list(parent.model_fields) if _is_model(parent) else []
        close = difflib.get_close_matches(str(where[-1]), known, n=1, cutoff=0.6)
        return where, f'unknown key (did you mean "{close[0]}"?)' if close else "unknown key"
    if kind == "literal_error":
        options = [str(a) for a in get_args(tp)] if get_origin(tp) is Literal else []
        options = options or re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return where, _one_of(options, value)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        if not tags and tp is not None:
            tags = [
                str(t) for m in get_args(tp) for t in get_args(m.model_fields["type"].annotation)
            ]
        where = [*where, "type"]
        if kind == "union_tag_not_found":
            return where, f"required (one of {_quoted_list(tags)})"
        return where, _one_of(tags, ctx.get("tag", value))
    if kind in _EXPECTED:
        return where, f"expected {_EXPECTED[kind]}, got {describe_value(value)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        limit = next(iter(ctx.values()), "?")
        return where, f"expected a value {sign} {limit}, got {describe_value(value)}"
    if kind in ("string_too_short", "too_short"):
        return where, "must not be empty"
    if kind == "string_pattern_mismatch":
        return where, f"expected text matching {ctx.get('pattern')}, got {describe_value(value)}"
    if kind in ("value_error", "assertion_error"):
        return where, str(ctx.get("error", error["msg"]))
    # Not produced by today's models; pydantic's own sentence is the best left.
    message = error["msg"]
    return where, f"{message[:1].lower()}{message[1:]}, got {describe_value(value)}"


# --- rules across fields ---------------------------------------------------------------

_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}


def _hosts_overlap(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    if a == "localhost":
        a = "127.0.0.1"
    if b == "localhost":
        b = "127.0.0.1"
    return a == b or a in _WILDCARD_HOSTS or b in _WILDCARD_HOSTS


def _route_key(route: RouteConfig) -> tuple[str, str]:
    path = route.path
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return route.host or "*", path


def _cross_field_issues(config: Config) -> list[str]:
    issues: list[str] = hosts.config_issues(config)
    issues.extend(accessories.issues(config))

    routes: dict[tuple[str, str], str] = {}
    issues.extend(kind_issues(config))
    for name, service in config.services.items():
        if service.route is None:
            continue  # a worker
        key = _route_key(service.route)
        if key in routes:
            host, path = key
            issues.append(
                f'services/{name}/route: same route as service "{routes[key]}" '
                f"(host {host}, path {path})"
            )
        else:
            routes[key] = name

    if config.pipeline is not None:
        issues.extend(_pipeline_issues(config))
    environments = ", ".join(sorted(config.environments))
    for index, target in enumerate(config.notify):
        for unknown in sorted(set(target.environments) - set(config.environments)):
            issues.append(
                f'notify/{index}/environments: unknown environment "{unknown}" '
                f"(environments: {environments})"
            )

    databases = ", ".join(sorted(config.databases)) or "none defined"
    for name, service in config.services.items():
        migrate = service.migrate
        if migrate is not None and migrate.database not in config.databases:
            issues.append(
                f'services/{name}/migrate/database: unknown database "{migrate.database}" '
                f"(databases: {databases})"
            )

    issues.extend(_job_issues(config))

    listeners: list[tuple[str, str, int]] = []
    known = ", ".join(sorted(config.services))
    for name, environment in config.environments.items():
        host, port = environment.listen_host, environment.listen_port
        for other, other_host, other_port in listeners:
            if port == other_port and _hosts_overlap(host, other_host):
                issues.append(
                    f"environments/{name}/listen: port {port} is already used by "
                    f'environment "{other}"'
                )
                break
        listeners.append((name, host, port))

        for override in environment.databases:
            if override not in config.databases:
                issues.append(
                    f'environments/{name}/databases/{override}: unknown database "{override}" '
                    f"(databases: {databases})"
                )
        for override in environment.services:
            if override not in config.services:
                issues.append(
                    f'environments/{name}/services/{override}: unknown service "{override}" '
                    f"(services are: {known})"
                )

        issues.extend(_policy_issues(config, name, environment))
        issues.extend(_verify_issues(config, name, environment))
        issues.extend(_monitor_issues(config, name, environment))
        strategy = environment.strategy
        issues.extend(_progressive_issues(config, name, strategy, listeners))
        if (
            isinstance(strategy, StrategyConfig)
            and strategy.type == "rolling"
            and is_zero_step(strategy.max_surge)
            and is_zero_step(strategy.max_unavailable)
        ):
            issues.append(
                f"environments/{name}/strategy: max_surge and max_unavailable are both 0, "
                "so a rolling deploy could never replace an instance (set max_surge to 1)"
            )
    issues.extend(_promotion_cycle(config))
    return issues


def _monitor_issues(config: Config, name: str, environment: Any) -> list[str]:
    """`monitors:` rules and probes that name a service the file does not have."""
    monitors = environment.monitors
    if monitors is None:
        return []
    services = ", ".join(sorted(config.services))
    issues = []
    for kind, items in (("rules", monitors.rules), ("probes", monitors.probes)):
        for item_name, item in items.items():
            if item.service is not None and item.service not in config.services:
                issues.append(
                    f"environments/{name}/monitors/{kind}/{item_name}/service: unknown service "
                    f'"{item.service}" (services are: {services})'
                )
    return issues


def _job_issues(config: Config) -> list[str]:
    """`jobs:` that name a service, database or environment the file does not have."""
    issues = []
    services = ", ".join(sorted(config.services))
    databases = ", ".join(sorted(config.databases)) or "none defined"
    environments = ", ".join(sorted(config.environments))
    for name, job in config.jobs.items():
        if job.service is not None and job.service not in config.services:
            issues.append(
                f'jobs/{name}/service: unknown service "{job.service}" (services are: {services})'
            )
        if job.backup is not None and job.backup not in config.databases:
            issues.append(
                f'jobs/{name}/backup: unknown database "{job.backup}" (databases: {databases})'
            )
        for unknown in sorted(set(job.environments) - set(config.environments)):
            issues.append(
                f'jobs/{name}/environments: unknown environment "{unknown}" '
                f"(environments: {environments})"
            )
    return issues


def _policy_issues(config: Config, name: str, environment: Any) -> list[str]:
    where = f"environments/{name}"
    issues = []
    source = environment.promote_from
    if source is not None and (source == name or source not in config.environments):
        others = ", ".join(sorted(e for e in config.environments if e != name)) or "none"
        issues.append(
            f'{where}/promote_from: "{source}" is not another environment (environments: {others})'
        )
    for index, freeze in enumerate(environment.freeze):
        if freeze.end < freeze.start:
            issues.append(
                f"{where}/freeze/{index}: ends ({freeze.end}) before it starts ({freeze.start})"
            )
    approvals = environment.approvals
    people: set[str] = set()
    unknown = False
    for approver in approvals.approvers if approvals is not None else ():
        if not approver.startswith("@"):
            people.add(approver)
        elif approver[1:] in config.groups:
            people.update(config.groups[approver[1:]])
        else:
            unknown = True
            known = ", ".join(sorted(config.groups)) or "none defined"
            issues.append(
                f'{where}/approvals/approvers: unknown group "{approver}" (groups: {known})'
            )
    if (
        approvals is not None
        and approvals.approvers
        and not unknown
        and approvals.required > len(people)
    ):
        issues.append(
            f"{where}/approvals/required: {approvals.required} approvals required, but the "
            f"approvers are {len(people)} {'person' if len(people) == 1 else 'people'}, so no "
            "deploy could ever be approved"
        )
    return issues


def _verify_issues(config: Config, name: str, environment: Any) -> list[str]:
    """`verify/analysis` names an analysis of the file."""
    verify = environment.verify
    if verify is None or verify.analysis is None or verify.analysis in config.analysis:
        return []
    known = ", ".join(sorted(config.analysis)) or "none defined"
    return [
        f'environments/{name}/verify/analysis: unknown analysis "{verify.analysis}" '
        f"(analyses: {known})"
    ]


def _promotion_cycle(config: Config) -> list[str]:
    """One line when the `promote_from` chains go round in a circle (nothing could ever be
    deployed first)."""
    from conveyor.pipeline.graph import find_cycle

    sources = {  # promoting from itself is reported on its own
        name: [env.promote_from] if env.promote_from not in (None, name) else []
        for name, env in config.environments.items()
    }
    cycle = find_cycle(sources)
    if not cycle:
        return []
    return [
        f"environments/{cycle[0]}/promote_from: the promotions go round in a circle "
        f"({' <- '.join(cycle)}), so no release could ever reach them: one environment "
        "must take releases without promote_from"
    ]


def _pipeline_issues(config: Config) -> list[str]:
    from conveyor.pipeline.graph import find_cycle

    assert config.pipeline is not None
    jobs = config.pipeline.jobs
    known = ", ".join(sorted(jobs))
    issues = [
        f'pipeline/jobs/{name}/needs: unknown job "{dep}" (jobs: {known})'
        for name, job in jobs.items()
        for dep in job.needs
        if dep not in jobs
    ]
    cycle = find_cycle({name: job.needs for name, job in jobs.items()})
    if cycle:
        issues.append(f"pipeline/jobs: the needs go round in a circle: {' -> '.join(cycle)}")
    return issues


def _progressive_issues(
    config: Config,
    environment: str,
    strategy: StrategySpec,
    listeners: list[tuple[str, str, int]],
) -> list[str]:
    """Rules of the blue_green and canary settings: analyses exist and fit, weights fit."""
    where = f"environments/{environment}/strategy"
    issues: list[str] = []
    known = ", ".join(sorted(config.analysis)) or "none defined"

    def analysis(key: str, name: str | None, against: str | None) -> None:
        if name is None:
            return
        template = config.analysis.get(name)
        if template is None:
            issues.append(f'{where}/{key}: unknown analysis "{name}" (analyses: {known})')
            return
        comparative = template.comparative
        wanted = comparative.against if isinstance(comparative, ComparativeConfig) else None
        if against is not None and comparative is not False and wanted not in (None, against):
            issues.append(
                f'{where}/{key}: analysis "{name}" compares against {wanted}, which this '
                f"strategy does not run (set baseline: true, or comparative.against: {against})"
            )

    if isinstance(strategy, CanaryStrategy):
        against = "baseline" if strategy.baseline else "stable"
        analysis("analysis", strategy.analysis, against)
        for index, step in enumerate(strategy.steps):
            if step.kind == "analysis":
                analysis(f"steps/{index}/analysis", step.analysis, against)
            if step.kind == "set_weight" and strategy.baseline and (step.set_weight or 0) > 50:
                issues.append(
                    f"{where}/steps/{index}/set_weight: at most 50 with baseline: true (the "
                    "baseline gets the same share as the canary); the last step is followed "
                    "by the full promotion anyway"
                )
    elif isinstance(strategy, BlueGreenStrategy):
        analysis("pre_promotion_analysis", strategy.pre_promotion_analysis, "stable")
        analysis("post_promotion_analysis", strategy.post_promotion_analysis, None)
        if strategy.pre_promotion_analysis is not None and strategy.preview is None:
            issues.append(
                f"{where}/pre_promotion_analysis: needs a preview address (set preview: "
                '"127.0.0.1:8081"): the new set gets no other traffic before the switch'
            )
        if strategy.preview is not None:
            host, port = parse_listen(strategy.preview)
            for other, other_host, other_port in listeners:
                if port == other_port and _hosts_overlap(host, other_host):
                    issues.append(
                        f'{where}/preview: port {port} is already used by environment "{other}"'
                    )
                    break
    return issues
