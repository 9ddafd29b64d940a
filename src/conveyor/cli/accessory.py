"""`conveyor accessory start|stop|restart|logs|list`: an environment's accessories."""

from __future__ import annotations

import sys
from typing import Any

import typer

from conveyor.cli.context import JsonOption, run, runtime
from conveyor.cli.output import console, emit_json, progress, say, warn

app = typer.Typer(
    help="The environment's accessories (Redis, a search engine...): long-lived programs "
    "with a data directory that deploys start when missing but never restart.",
    no_args_is_help=True,
)

EnvArgument = typer.Argument(..., help="Environment.")
NameArgument = typer.Argument(..., help="Accessory (a key of accessories: in conveyor.yml).")


def _changing(environment: str, name: str) -> Any:
    """The runtime of a command that starts or stops it: the environment's secrets
    resolved (the accessory gets them), its lock held meanwhile."""
    from conveyor.engine import accessories

    rt = runtime()
    accessories.configured(rt, environment, name)
    rt.secrets(environment)
    return rt


@app.command()
def start(
    environment: str = EnvArgument,
    name: str = NameArgument,
    as_json: bool = JsonOption,
) -> None:
    """Start the accessory unless it runs (then nothing changes), and wait until healthy."""
    from conveyor.engine import accessories
    from conveyor.engine.deployments import lock_environment

    rt = _changing(environment, name)
    with lock_environment(rt, environment, f"accessory start {name}"):
        result = run(accessories.start(rt, environment, name, progress))
    _show(result, environment, as_json)


@app.command()
def restart(
    environment: str = EnvArgument,
    name: str = NameArgument,
    as_json: bool = JsonOption,
) -> None:
    """Stop the accessory and start it with conveyor.yml's config as it is now (its data
    directory stays)."""
    from conveyor.engine import accessories
    from conveyor.engine.deployments import lock_environment

    rt = _changing(environment, name)
    with lock_environment(rt, environment, f"accessory restart {name}"):
        result = run(accessories.restart(rt, environment, name, progress))
    _show(result, environment, as_json)


def _show(result: Any, environment: str, as_json: bool) -> None:
    from conveyor.engine import accessories

    record = result.record
    if as_json:
        emit_json(
            {
                "environment": environment,
                "name": result.name,
                "outcome": result.outcome,
                "host": record.host,
                "port": record.port,
                "address": record.address,
                "pid": result.pid,
            }
        )
    elif result.outcome == accessories.DIFFERS:
        warn(result.describe(environment))
    else:
        say(result.describe(environment))


@app.command()
def stop(
    environment: str = EnvArgument,
    name: str = NameArgument,
) -> None:
    """Stop the accessory (SIGTERM, then SIGKILL after its stop_timeout). Its data directory
    and port stay for the next start."""
    from conveyor.engine import accessories
    from conveyor.engine.deployments import lock_environment

    rt = runtime(defer_unset=True)
    accessories.configured(rt, environment, name)
    with lock_environment(rt, environment, f"accessory stop {name}"):
        before = run(accessories.stop(rt, environment, name))
    where = accessories.data_dir(rt, environment, name)
    if before.state in ("unknown", "stopped", "exited", "fatal"):
        say(f"accessory {name} of {environment} was not running; its data stays in {where}")
    else:
        say(f"stopped accessory {name} (pid {before.pid}); its data stays in {where}")


@app.command()
def logs(
    environment: str = EnvArgument,
    name: str = NameArgument,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(100, "--lines", "-n", min=0, help="How many lines."),
) -> None:
    """The accessory's output (stdout and stderr), as it wrote it."""
    from conveyor.engine import accessories

    rt = runtime(defer_unset=True)
    accessories.configured(rt, environment, name)

    async def tail() -> None:
        if not follow:
            for line in await accessories.logs(rt, environment, name, lines):
                sys.stdout.write(line + "\n")
            return
        async for line in accessories.follow(rt, environment, name, lines):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    try:
        run(tail())
    except KeyboardInterrupt:
        return


@app.command(name="list")
def list_accessories(
    environment: str = EnvArgument,
    as_json: bool = JsonOption,
) -> None:
    """The environment's accessories: where each runs, its port, address and process."""
    from rich.markup import escape

    from conveyor.engine import accessories

    rt = runtime(defer_unset=True)
    found = run(accessories.report(rt, environment))
    if as_json:
        emit_json({"environment": environment, "accessories": found})
        return
    if not found:
        say(f"{environment} has no accessories")
        return
    for item in found:
        where = item["address"] or "-"
        if item["host"] not in (None, "local"):
            where = f"{item['host']} {where}"
        pid = f" pid={item['pid']}" if item["pid"] else ""
        console().print(
            f"{escape(item['name'])}  {escape(where)}  process={item['process']}{pid}  "
            f"data={escape(item['data_dir'])}"
        )
