"""`conveyor server`, `conveyor tokens` and `conveyor audit`: the control plane."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli.context import STATE, JsonOption, load
from conveyor.cli.output import emit_json, iso, local_time, say, warn
from conveyor.errors import UsageError

if TYPE_CHECKING:
    from conveyor.config import LoadedConfig

DEFAULT_LISTEN = "127.0.0.1:8700"
PROGRAM = "conveyor-server"

server_app = typer.Typer(
    help="The control plane: an HTTP API with tokens and roles (see the README).",
    invoke_without_command=True,
    no_args_is_help=False,
)
tokens_app = typer.Typer(help="API tokens of conveyor server.", no_args_is_help=True)

ListenOption = typer.Option(DEFAULT_LISTEN, "--listen", help="HOST:PORT to listen on.")


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")
    app.add_typer(tokens_app, name="tokens")
    app.command()(audit)


def _store() -> Any:
    from conveyor.engine.runtime import Runtime
    from conveyor.identity import current_user

    return Runtime.open(load(defer_unset=True), current_user()).store


def parse_listen(text: str) -> tuple[str, int]:
    """("127.0.0.1", 8700) of "127.0.0.1:8700" ("[::1]:8700" for IPv6)."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f'--listen "{text}": expected HOST:PORT, e.g. {DEFAULT_LISTEN}')
    return host, int(port)


@server_app.callback()
def server(ctx: typer.Context, listen: str = ListenOption) -> None:
    """Serve the API in the foreground (Ctrl-C stops it); `start` runs it under supervisord."""
    if ctx.invoked_subcommand is not None:
        return
    import logging

    import uvicorn

    from conveyor.server.app import create_app

    host, port = parse_listen(listen)
    if host not in ("127.0.0.1", "::1", "localhost"):
        warn(
            f"listening on {host}: the API speaks plain HTTP; expose it through the "
            "router (TLS), not directly"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    load(defer_unset=True)  # a broken conveyor.yml is an error now, not at the first request
    uvicorn.run(
        create_app(STATE.config_path),
        host=host,
        port=port,
        log_level="info",
        access_log=True,
        # an open dashboard page keeps a live stream open: do not wait for it to stop
        timeout_graceful_shutdown=2,
    )


@server_app.command()
def start(listen: str = ListenOption) -> None:
    """Run `conveyor server` under the project's supervisord (restarted if it dies)."""
    import os

    from conveyor.paths import Paths
    from conveyor.targets.supervisor import Supervisor

    parse_listen(listen)
    loaded = load(defer_unset=True)
    paths = Paths.for_project(loaded.root).ensure()
    supervisor = Supervisor(paths)
    supervisor.ensure_running()
    # supervisord's programs start from a minimal environment: the server gets the
    # variables conveyor.yml refers to as they are here (the program's file is 0600).
    from conveyor.config.loader import referenced_variables

    wanted = referenced_variables(loaded.path.read_text()) | {
        "CONVEYOR_STATE_URL",
        "CONVEYOR_USER",
        "PYTHONPATH",
    }
    env = {name: os.environ[name] for name in sorted(wanted) if os.environ.get(name)}
    env |= {"CONVEYOR_HOME": str(paths.home), "PYTHONDONTWRITEBYTECODE": "1"}
    log = paths.home / "logs" / f"{PROGRAM}.log"
    command = [sys.executable, "-m", "conveyor", "--config", str(loaded.path)]
    supervisor.add_program(
        PROGRAM,
        [*command, "server", "--listen", listen],
        cwd=loaded.root,
        env=env,
        stdout_log=log,
        stop_timeout=10.0,
        owner="server",
    )
    say(f"conveyor server runs under supervisord on http://{listen} (log: {log})")
    _route_through(loaded, listen)


def _route_through(loaded: LoadedConfig, listen: str) -> None:
    """Put the server's route into the router of each environment with `server:`."""
    from conveyor.cli.context import run, runtime
    from conveyor.engine import deployments

    exposing = {n: e for n, e in loaded.config.environments.items() if e.server is not None}
    if not exposing:
        return
    rt = runtime(defer_unset=True)

    async def route() -> None:
        for name in exposing:
            await rt.ensure_platform(name)
            await deployments.refresh_routes(rt, name)

    run(route())
    for name, env in exposing.items():
        assert env.server is not None
        if env.server.address != listen:
            warn(
                f"environments/{name}/server/address is {env.server.address}, but the "
                f"server listens on {listen}: the router will not reach it",
            )
        say(f"  and through {name}'s router: {_public(env.effective_url, env.server.host)}")


def _public(url: str, host: str) -> str:
    """The environment's URL with the server's host name in it."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}/"


@server_app.command()
def stop() -> None:
    """Stop the `conveyor server` that `start` runs."""
    from conveyor.paths import Paths
    from conveyor.targets.supervisor import Supervisor

    paths = Paths.for_project(load(defer_unset=True).root).ensure()
    supervisor = Supervisor(paths)
    if supervisor.is_running() and supervisor.remove_program(PROGRAM):
        say("conveyor server stopped")
    else:
        say("conveyor server was not running")


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Option(..., "--name", help="Who acts with it (history, approvals, audit)."),
    role: str = typer.Option(..., "--role", help="viewer, deployer, approver or admin."),
    env: list[str] | None = typer.Option(
        None, "--env", help="Only in this environment (repeatable; default: all)."
    ),
    expires: str | None = typer.Option(None, "--expires", help="e.g. 30d, 12w, 48h."),
) -> None:
    """Make a token and print it (once: only its hash is kept)."""
    from conveyor.identity import current_user
    from conveyor.server import tokens
    from conveyor.store.records import TokenRecord

    loaded = load(defer_unset=True)
    for name_of_env in env or []:
        if name_of_env not in loaded.config.environments:
            known = ", ".join(sorted(loaded.config.environments))
            raise UsageError(f'--env: unknown environment "{name_of_env}" (environments: {known})')
    now = datetime.now(UTC)
    secret = tokens.new_token()
    record = TokenRecord(
        name=tokens.check_name(name),
        role=tokens.check_role(role),
        token_hash=tokens.token_hash(secret),
        created_at=now,
        created_by=current_user(),
        environments=list(dict.fromkeys(env or [])),
        expires_at=tokens.expiry(expires, now),
    )
    _store().add_token(record)
    sys.stdout.write(secret + "\n")
    where = ", ".join(record.environments) or "every environment"
    until = f", expires {local_time(record.expires_at)}" if record.expires_at else ""
    sys.stderr.write(
        f"token {record.name} ({record.role}, {where}{until}): shown once, keep it safe\n"
    )


@tokens_app.command("list")
def tokens_list(as_json: bool = JsonOption) -> None:
    """The tokens: name, role, environments, when made and last used, state."""
    from conveyor.server.tokens import state

    now = datetime.now(UTC)
    rows = [
        {
            "name": t.name,
            "role": t.role,
            "environments": t.environments,
            "created_at": iso(t.created_at),
            "created_by": t.created_by,
            "last_used_at": iso(t.last_used_at),
            "expires_at": iso(t.expires_at),
            "revoked_at": iso(t.revoked_at),
            "state": state(t, now),
        }
        for t in _store().list_tokens()
    ]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        say("no tokens yet: conveyor tokens create --name NAME --role ROLE")
        return
    for row in rows:
        say(
            f"{row['name']}  {row['role']}  {', '.join(row['environments']) or 'all'}  "
            f"{row['state']}  created {row['created_at']}  last used {row['last_used_at'] or '-'}"
            + (f"  expires {row['expires_at']}" if row["expires_at"] else "")
        )


@tokens_app.command("revoke")
def tokens_revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a token: the server refuses it (401) from now on."""
    store = _store()
    record = store.get_token(name)
    if record is None:
        raise UsageError(f'unknown token "{name}"', hint="see them with: conveyor tokens list")
    if record.revoked_at is None:
        store.update_token(name, revoked_at=datetime.now(UTC))
    say(f"token {name} is revoked")


def audit(
    limit: int = typer.Option(100, "--limit", "-n", min=1, help="How many entries."),
    as_json: bool = JsonOption,
) -> None:
    """What was asked of conveyor server that changes something, by whom, newest first."""
    from conveyor.server.audit import audit_json

    if STATE.server:
        from conveyor.remote import commands

        commands.audit(limit, as_json)

        return
    print_audit([audit_json(a) for a in _store().list_audit(limit)], as_json)


def print_audit(rows: list[dict[str, Any]], as_json: bool) -> None:
    """`conveyor audit` of its `--json` rows (here or from a server)."""
    if as_json:
        emit_json(rows)
        return
    if not rows:
        say("the audit is empty")
        return
    for row in rows:
        say(
            f"{row['time']}  {row['token']} ({row['role']})  {row['method']} {row['path']}  "
            f"{row['status']}  {row['outcome']}"
        )
