"""`conveyor validate` and `conveyor schema`."""

from __future__ import annotations

import typer

from conveyor.cli.context import JsonOption, load
from conveyor.cli.output import emit_json, say


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(schema)


def validate(as_json: bool = JsonOption) -> None:
    """Check conveyor.yml; print every problem with its key path (exit 2 if any).

    A variable that is unset but only needed to start something (`run:`, `env`)
    is a warning (exit 0): deploy, build and rollback refuse until it is set.
    """
    loaded = load(defer_unset=True)
    config = loaded.config
    warnings = loaded.unset_issues()
    if as_json:
        emit_json(
            {
                "valid": True,
                "path": str(loaded.path),
                "project": config.project,
                "services": list(config.services),
                "environments": list(config.environments),
                "unset": {name: list(paths) for name, paths in loaded.unset.items()},
            }
        )
        return
    say(f"{loaded.path}: valid")
    say(
        f"  project {config.project}: services {', '.join(config.services)}; "
        f"environments {', '.join(config.environments)}"
    )
    if warnings:
        from conveyor.cli.output import warn

        names = ", ".join(loaded.unset)
        warn(
            f"unset: {names}. Commands that start something (deploy, build, rollback) "
            "refuse until it is set:\n" + "\n".join(f"  {w}" for w in warnings)
        )


def schema() -> None:
    """Print the JSON Schema of conveyor.yml (for editor completion)."""
    from conveyor.config.schema import json_schema

    emit_json(json_schema())
