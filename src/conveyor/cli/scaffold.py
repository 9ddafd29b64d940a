"""`conveyor init`: write a conveyor.yml for a project made by its framework's tools."""

from __future__ import annotations

from pathlib import Path

import typer

from conveyor.cli.context import JsonOption
from conveyor.cli.output import emit_json, say
from conveyor.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command()(init)


def init(
    directory: Path = typer.Argument(Path(), help="The project's directory."),
    listen: str = typer.Option(
        "127.0.0.1:8080", "--listen", help="Where the staging environment serves (ADDR:PORT)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing conveyor.yml."),
    as_json: bool = JsonOption,
) -> None:
    """Detect Django, Flask, FastAPI, Express, Next.js (or a Procfile) and write conveyor.yml."""
    from conveyor.frameworks import detect
    from conveyor.frameworks.render import project_name, render

    root = directory.resolve()
    if not root.is_dir():
        raise UsageError(f"{directory}: no such directory")
    target = root / "conveyor.yml"
    if target.exists() and not force:
        raise UsageError(
            f"{target} already exists", hint="pass --force to overwrite it, or edit it by hand"
        )
    found = detect(root)
    if found is None:
        raise UsageError(
            f"{root}: no Django, Flask, FastAPI, Express or Next.js project or Procfile found",
            hint="run it in the project's directory, or write conveyor.yml by hand (see README)",
        )
    text = render(found, project=project_name(root.name), listen=listen)
    target.write_text(text)
    if as_json:
        emit_json(
            {
                "path": str(target),
                "framework": found.framework,
                "evidence": found.evidence,
                "service": "web",
                "environment": "staging",
                "listen": listen,
                "notes": list(found.notes),
                "next": ["conveyor deploy staging --build"],
            }
        )
        return
    say(f"Detected {found.framework} ({found.evidence}).")
    say(f"Wrote {target}: service web, environment staging on {listen}.")
    for note in found.notes:
        say(f"  check: {note}")
    say("Next: commit your code (releases are built from git HEAD), then:")
    say("  conveyor deploy staging --build   (builds the first release, then deploys it)")
