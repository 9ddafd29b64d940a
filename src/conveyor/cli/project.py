"""`conveyor validate` and `conveyor schema`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from conveyor.cli.context import JsonOption, load
from conveyor.cli.output import emit_json, say
from conveyor.errors import EXIT_USAGE, ConfigError, UsageError

if TYPE_CHECKING:
    from conveyor.config import LoadedConfig


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(schema)


def validate(
    environment: str | None = typer.Argument(
        None, help="Also check that this environment's secrets can be resolved."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Check conveyor.yml; print every problem with its key path (exit 2 if any).

    A variable that is unset but only needed to start something (`run:`, `env`)
    is a warning (exit 0): deploy, build and rollback refuse until it is set.
    With ENVIRONMENT, every secret of it that cannot be resolved is named with its
    provider (exit 2); no value is printed and no `command:` provider is run.
    """
    loaded = load(defer_unset=True)
    config = loaded.config
    _check_tls(loaded)
    warnings = loaded.unset_issues()
    missing = _missing_secrets(loaded, environment) if environment else []
    if as_json:
        emit_json(
            {
                "valid": True,
                "path": str(loaded.path),
                "project": config.project,
                "services": list(config.services),
                "environments": list(config.environments),
                "unset": {name: list(paths) for name, paths in loaded.unset.items()},
                **({"missing_secrets": missing} if environment else {}),
            }
        )
        if missing:
            raise typer.Exit(EXIT_USAGE)
        return
    say(f"{loaded.path}: valid")
    from conveyor.config.kinds import WEB, service_kind

    kinds = {name: service_kind(svc) for name, svc in config.services.items()}
    services = ", ".join(n if k == WEB else f"{n} ({k})" for n, k in kinds.items())
    say(
        f"  project {config.project}: services {services}; "
        f"environments {', '.join(config.environments)}"
    )
    if warnings:
        from conveyor.cli.output import warn

        names = ", ".join(loaded.unset)
        warn(
            f"unset: {names}. Commands that start something (deploy, build, rollback) "
            "refuse until it is set:\n" + "\n".join(f"  {w}" for w in warnings)
        )
    if missing:
        raise ConfigError(
            missing,
            source=f"secrets of {environment} that cannot be resolved (deploys refuse)",
            hint=f"set them: conveyor secrets set {environment} NAME, the variables, the files",
        )
    if environment:
        count = len(config.secrets_for(environment))
        say(f"  {environment}: {count} secret{'s' * (count != 1)}, all resolvable")


def _check_tls(loaded: LoadedConfig) -> None:
    """Each environment's `tls:` files exist, parse, match, and the key is private."""
    from conveyor.routers.tls import environment_tls

    issues: list[str] = []
    hint: str | None = None
    for name in loaded.config.environments:
        try:
            environment_tls(loaded, name)
        except ConfigError as exc:
            issues.extend(exc.issues)
            hint = exc.hint
    if issues:
        raise ConfigError(issues, source=str(loaded.path), hint=hint)


def _missing_secrets(loaded: LoadedConfig, environment: str) -> list[str]:
    from conveyor.secrets import SecretsError
    from conveyor.secrets.resolve import missing

    if environment not in loaded.config.environments:
        raise UsageError(
            f'unknown environment "{environment}" (environments are: '
            f"{', '.join(sorted(loaded.config.environments))})"
        )
    try:
        return missing(loaded, environment)
    except SecretsError as exc:
        return [exc.message]


def schema() -> None:
    """Print the JSON Schema of conveyor.yml (for editor completion)."""
    from conveyor.config.schema import json_schema

    emit_json(json_schema())
