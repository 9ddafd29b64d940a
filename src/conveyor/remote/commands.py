"""The commands that act through a conveyor server (`--server URL` / CONVEYOR_SERVER).

Each asks the API for what the local command computes (the API answers the CLI's
`--json`) and prints it with the local command's own renderer, so that the output
and the exit codes are the same. A change that is still running when the server
answers (202) is followed until it ends, its step lines on stderr as a local deploy
prints them; Ctrl-C stops the following, not the deployment.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import quote

import typer

from conveyor.cli.context import STATE
from conveyor.cli.output import emit_json, err_console, progress, warn
from conveyor.errors import UsageError
from conveyor.remote.client import (
    SERVER_VARIABLE,
    Client,
    in_clear,
    server_url,
    token_from_environment,
)

# The commands that work through a server; every other one is refused with --server.
REMOTE_COMMANDS = frozenset(
    {
        "status",
        "history",
        "explain",
        "dora",
        "deploy",
        "rollback",
        "promote",
        "pause",
        "resume",
        "abort",
        "approve",
        "reject",
        "audit",
    }
)
# Statuses of a deployment that goes on by itself: a deploy follows it while it has one.
GOING_ON = frozenset({"pending", "running", "rolling_back", "aborting", "awaiting_approval"})
POLL_S = 0.5
HISTORY_LOOKUP = 50  # the deployments searched for the one a change followed

Exits = Literal["landed", "waiting", "none"]


def use_server(ctx: typer.Context, text: str) -> None:
    """Act through the server at `text` from now on, if the invoked command can."""
    url = server_url(text)
    command = ctx.invoked_subcommand
    if command is None:
        return
    if command not in REMOTE_COMMANDS:
        source = ctx.get_parameter_source("server")
        from_env = getattr(source, "name", None) == "ENVIRONMENT"
        where = f"{SERVER_VARIABLE} is set" if from_env else "--server"
        raise UsageError(
            f"conveyor {command} is not available through a server yet ({where}: {url}); "
            "run it on the server's machine",
            hint=f"unset {SERVER_VARIABLE} to run it here"
            if from_env
            else "run it without --server, on the server's machine",
        )
    if in_clear(url):
        warn(
            f"{url} is plain HTTP to another machine: the token travels in clear; "
            "use https:// (the server behind the router with TLS)"
        )
    STATE.server = url


def refuse_options(command: str, options: dict[str, bool]) -> None:
    """Refuse the options of `command` that the API does not take (yet)."""
    used = [name for name, given in options.items() if given]
    if used:
        raise UsageError(
            f"conveyor {command} {', '.join(used)} is not available through a server yet; "
            "run it on the server's machine",
            hint=f"without {', '.join(used)}, or without --server ({STATE.server})",
        )


@contextmanager
def connection() -> Iterator[Client]:
    url = STATE.server
    assert url is not None, "a remote command runs with --server only"
    client = Client(url, token_from_environment(url))
    try:
        yield client
    finally:
        client.close()


def _segment(text: str) -> str:
    return quote(text, safe="")


# -- reading --------------------------------------------------------------------------


def status(environment: str | None, as_json: bool) -> None:
    from conveyor.cli.inspect import print_status

    path = "/api/environments" + (f"/{_segment(environment)}" if environment else "")
    with connection() as api:
        print_status(api.get(path).body, as_json)


def history(environment: str, limit: int, as_json: bool) -> None:
    from conveyor.cli.inspect import print_history

    with connection() as api:
        items = api.get(f"/api/environments/{_segment(environment)}/deployments", limit=limit)
    if as_json:
        emit_json(items.body)
        return
    print_history(environment, items.body)


def explain(deployment_id: str, as_json: bool) -> None:
    from conveyor.cli.explain import print_explanation

    with connection() as api:
        print_explanation(api.get(f"/api/deployments/{_segment(deployment_id)}").body, as_json)


def dora(environment: str | None, since: str, as_json: bool) -> None:
    from conveyor.cli.dora import default_environment, print_dora

    with connection() as api:
        if environment is None:
            names = [e["name"] for e in api.get("/api/environments").body["environments"]]
            if not names:
                raise UsageError(
                    f"the token may see no environment on {api.url}",
                    hint="name one: conveyor dora ENV",
                )
            environment = default_environment(names)
        data = api.get(f"/api/environments/{_segment(environment)}/dora", since=since).body
    print_dora(data, as_json)


def audit(limit: int, as_json: bool) -> None:
    from conveyor.cli.server import print_audit

    with connection() as api:
        print_audit(api.get("/api/audit", limit=limit).body, as_json)


# -- changing -------------------------------------------------------------------------


def deploy(environment: str, releases: dict[str, str], message: str | None, as_json: bool) -> None:
    _change(environment, "deploy", {"releases": releases, "message": message}, as_json, "landed")


def rollback(environment: str, to: list[str], message: str | None, as_json: bool) -> None:
    _change(environment, "rollback", {"to": to, "message": message}, as_json, "none")


def promote(environment: str, full: bool, as_json: bool) -> None:
    _change(environment, "promote", {"full": full}, as_json, "waiting")


def pause(environment: str, as_json: bool) -> None:
    _change(environment, "pause", {}, as_json, "none")


def resume(environment: str, as_json: bool) -> None:
    _change(environment, "resume", {}, as_json, "waiting")


def abort(environment: str, message: str | None, as_json: bool) -> None:
    _change(environment, "abort", {"message": message}, as_json, "none")


def decide(deployment_id: str, *, approve: bool, message: str) -> None:
    from conveyor.cli.deploy import show_decision

    verb = "approve" if approve else "reject"
    with connection() as api:
        answer = api.post(
            f"/api/deployments/{_segment(deployment_id)}/{verb}", {"message": message}
        )
    body = answer.body
    show_decision(
        deployment_id,
        body["deployment"]["environment"],
        body["approval"],
        approve,
        bool(body.get("approved", True)),
        bool(body.get("waiting", True)),
    )


def _change(
    environment: str, action: str, body: dict[str, Any], as_json: bool, exits: Exits
) -> None:
    """POST the change, follow what it started, print it as the local command does."""
    from conveyor.cli.deploy import NOT_LANDED, exit_waiting, show_deployment_json, show_nothing

    with connection() as api:
        try:
            data = api.post(f"/api/environments/{_segment(environment)}/{action}", body).body
        except KeyboardInterrupt:
            err_console().print(
                f"interrupted before {api.url} answered: the {action} may have started "
                f"there; see: conveyor status {environment}",
                markup=False,
            )
            raise typer.Exit(130) from None
        if data is None or "dry_run" in data:  # a plan with nothing to do: nothing changed
            if as_json:
                emit_json(data)
            else:
                show_nothing(environment)
            return
        explained: dict[str, Any] | None = None
        started_it = action in ("deploy", "rollback")
        goes_on = action != "pause" and data["status"] in GOING_ON  # pause only asks
        if started_it or goes_on:
            data, explained = follow(api, data, quiet=as_json, from_start=started_it)
        url = "" if as_json else _url_of(api, environment)
        show_deployment_json(data, as_json, url)
        if exits == "landed" and data["status"] in NOT_LANDED:
            raise typer.Exit(1)
        if exits != "none" and data["status"] == "paused":
            if explained is None:
                explained = api.get(f"/api/deployments/{_segment(data['id'])}").body
            paused = [s for s in explained["steps"] if s["status"] == "paused"]
            why = (paused[-1]["note"] or paused[-1]["description"]) if paused else "paused"
            exit_waiting(data["id"], data["environment"], why)


def _url_of(api: Client, environment: str) -> str:
    report = api.get(f"/api/environments/{_segment(environment)}").body
    url: str = report["environments"][0]["url"]
    return url


def follow(
    api: Client, started: dict[str, Any], quiet: bool, from_start: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Poll the deployment until it no longer goes on by itself, printing each step as
    it starts (unless `quiet`; from its first step when `from_start`, else from the
    ones that run now); its record and its explanation at the end."""
    from conveyor.engine.step_hosts import where

    deployment_id, env = started["id"], started["environment"]
    path = f"/api/deployments/{_segment(deployment_id)}"
    shown: set[int] = set()
    told_waiting = False
    # Ctrl-C only marks the following as stopped: raised as KeyboardInterrupt in the
    # middle of a request, it could leave the HTTP client's pool locked, and the CLI
    # hung on exit closing it. The loop looks at the mark between two polls; a second
    # Ctrl-C (a server slow to answer) interrupts at once.
    interrupted: list[int] = []

    def interrupt(number: int, _frame: object) -> None:
        interrupted.append(number)
        if len(interrupted) > 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        while not interrupted:
            explained: dict[str, Any] = api.get(path).body
            if not from_start and not shown:  # what ran before this command is not news
                shown = {s["index"] for s in explained["steps"] if s["status"] != "running"}
                shown.add(0)
            for step in explained["steps"]:
                if step["index"] in shown or step["status"] == "skipped":
                    continue
                shown.add(step["index"])
                if not quiet:
                    service = f"[{step['service']}] " if step.get("service") else ""
                    hosts = where(step.get("hosts") or [])
                    progress(f"{service}{step['description']}{hosts}")
            status = explained["status"]
            if status not in GOING_ON:
                break
            if status == "awaiting_approval" and not told_waiting and not quiet:
                told_waiting = True
                progress(
                    f"waiting for approval of {deployment_id} in {env}: "
                    f"conveyor approve {deployment_id}"
                )
            time.sleep(POLL_S)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        out = err_console()
        out.print(
            f"stopped following {deployment_id}: it goes on on the server ({api.url}); "
            f"see it with: conveyor status {env}, conveyor explain {deployment_id}",
            markup=False,
        )
        raise typer.Exit(130)
    return _record_of(api, started, explained), explained


def _record_of(api: Client, started: dict[str, Any], explained: dict[str, Any]) -> dict[str, Any]:
    """The deployment as `--json` prints it, from the environment's history."""
    env = _segment(started["environment"])
    items = api.get(f"/api/environments/{env}/deployments", limit=HISTORY_LOOKUP).body
    for item in items:
        if item.get("id") == started["id"] and item.get("kind") != "run":
            return {k: v for k, v in item.items() if k not in ("notifications", "hook_failures")}
    # Out of the history's reach: what the explanation says of it.
    return {**started, "status": explained["status"], "error": explained.get("reason")}
