"""`conveyor hosts ENV`, `conveyor hosts trust ENV` and `conveyor setup ENV`: the hosts
of a `target: ssh` environment (README "Many hosts")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli.context import JsonOption, YesOption, load, run
from conveyor.cli.groups import DefaultCommandGroup
from conveyor.cli.output import confirm, emit_json, say

if TYPE_CHECKING:
    from conveyor.paths import Paths
    from conveyor.ssh.health import HostHealth
    from conveyor.ssh.hosts import HostSpec
    from conveyor.ssh.layout import RemoteLayout
    from conveyor.ssh.setup import HostSetup
    from conveyor.ssh.trust import OfferedKey


class _CheckByDefault(DefaultCommandGroup):
    """`conveyor hosts ENV` is `conveyor hosts check ENV`."""

    default = "check"


app = typer.Typer(
    cls=_CheckByDefault,
    no_args_is_help=True,
    help="The hosts of a `target: ssh` environment: `conveyor hosts ENV [--json]` checks "
    "them (reachable, host key, supervisord, disk, clock); `conveyor hosts trust ENV` "
    "records their SSH host keys.",
)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="hosts")
    main.command("setup")(setup)


@dataclass(frozen=True)
class _Environment:
    name: str
    hosts: list[HostSpec]
    paths: Paths
    layout: RemoteLayout


def _environment(name: str) -> _Environment:
    """The hosts of environment `name`: `${VAR}`s elsewhere in conveyor.yml may be unset
    (nothing starts here), those of its `hosts:` may not."""
    from conveyor.config.loader import UNSET_HINT
    from conveyor.errors import ConfigError
    from conveyor.paths import Paths
    from conveyor.ssh.inventory import environment_hosts
    from conveyor.ssh.layout import RemoteLayout

    loaded = load(defer_unset=True)
    loaded.config.environment(name)
    issues = loaded.unset_issues(f"environments/{name}/hosts")
    if issues:
        raise ConfigError(issues, source=str(loaded.path), hint=UNSET_HINT)
    hosts = environment_hosts(loaded.config, name, loaded.root)
    return _Environment(
        name, hosts, Paths.for_project(loaded.root), RemoteLayout(loaded.config.project)
    )


def _fail(count: int, what: str) -> typer.Exit:
    from conveyor.errors import EXIT_FAILED

    typer.echo(f"error: {count} host{'s' * (count != 1)} {what}", err=True)
    return typer.Exit(EXIT_FAILED)


# --- conveyor hosts trust -------------------------------------------------------------


@app.command()
def trust(
    environment: str = typer.Argument(..., help="The environment whose hosts to trust."),
    yes: bool = YesOption,
    as_json: bool = JsonOption,
) -> None:
    """Show each host's SSH host key fingerprint and record it in the Conveyor home's
    known_hosts after a yes (on a terminal, or --yes). A changed key is shown with the
    one recorded before and needs the same yes."""
    env = _environment(environment)
    offered = run(_trust(env, yes, as_json))
    if as_json:
        emit_json({"environment": environment, "hosts": [o.to_json() for o in offered]})
    # In --json, "status" is what each key was before: unknown and changed ones are now
    # recorded (the command got its yes, or it failed).
    failed = [o for o in offered if o.status == "unreachable"]
    if failed:
        raise _fail(len(failed), "could not be asked for their key")


async def _trust(env: _Environment, yes: bool, as_json: bool) -> list[OfferedKey]:
    from conveyor.ssh import known_hosts
    from conveyor.ssh.connection import Connections
    from conveyor.ssh.trust import offered_keys, rounds

    shown: list[OfferedKey] = []
    async with Connections(env.paths.known_hosts) as connections:
        # Hosts behind a jump host are asked once the jump host is trusted.
        for batch in rounds(env.hosts):
            offered = await offered_keys(connections, batch)
            shown.extend(offered)
            if not as_json:
                for key in offered:
                    say(_describe_key(key))
            new = [o for o in offered if o.status in ("unknown", "changed")]
            if not new:
                continue
            question = "record the host key" + "s" * (len(new) != 1) + " of "
            question += ", ".join(o.host.name for o in new)
            changed = [o.host.name for o in new if o.status == "changed"]
            if changed:
                question += f" (CHANGED: {', '.join(changed)})"
            confirm(question + "?", yes=yes)
            for key in new:
                assert key.key is not None
                known_hosts.record(env.paths.known_hosts, key.host.key_name, key.key)
                if not as_json:
                    say(f"{key.host.name}: recorded {key.fingerprint}")
    return shown


def _describe_key(key: OfferedKey) -> str:
    where = key.host.describe()
    if key.status == "unreachable":
        return key.error or f"{where}: unreachable"
    if key.status == "trusted":
        return f"{where}: {key.fingerprint} (already trusted)"
    if key.status == "changed":
        before = ", ".join(key.recorded_fingerprints)
        return f"{where}: host key CHANGED: recorded {before}, now offers {key.fingerprint}"
    return f"{where}: {key.fingerprint} (new)"


# --- conveyor hosts [check] ENV -------------------------------------------------------


@app.command()
def check(
    environment: str = typer.Argument(..., help="The environment whose hosts to check."),
    as_json: bool = JsonOption,
) -> None:
    """Check every host of ENV, in parallel: reachable, host key trusted, supervisord up,
    free disk of the project's directory, clock skew. Exits 1 when a host has a problem.
    `conveyor hosts ENV` is the same."""
    from conveyor.ssh.health import check_hosts

    env = _environment(environment)
    found = run(_with_connections(env, check_hosts))
    if as_json:
        emit_json(
            {
                "environment": environment,
                "ok": all(h.ok for h in found),
                "hosts": [h.to_json() for h in found],
            }
        )
    else:
        for health in found:
            say(_describe_health(health))
    bad = [h for h in found if not h.ok]
    if bad:
        raise _fail(len(bad), "with problems: " + ", ".join(h.host.name for h in bad))


async def _with_connections(env: _Environment, check: Any) -> Any:
    from conveyor.ssh.connection import Connections

    async with Connections(env.paths.known_hosts) as connections:
        return await check(connections, env.hosts, env.layout)


def _describe_health(health: HostHealth) -> str:
    facts = []
    if health.host_key is not None:
        facts.append(f"key {health.host_key}")
    if health.supervisord is not None:
        facts.append(f"supervisord {health.supervisord}")
    if health.disk_free is not None:
        facts.append(f"{health.disk_free / 1024**3:.1f} GiB free")
    if health.clock_skew is not None:
        facts.append(f"clock {health.clock_skew:+.3f} s")
    state = "ok" if health.ok else "PROBLEM: " + "; ".join(health.problems)
    return f"{health.host.describe()}: {state}" + (f" ({', '.join(facts)})" if facts else "")


# --- conveyor setup -------------------------------------------------------------------


def setup(
    environment: str = typer.Argument(..., help="The environment whose hosts to prepare."),
    as_json: bool = JsonOption,
) -> None:
    """Prepare the hosts of a `target: ssh` environment, as their normal users: check
    python3, create the project's directories, install supervisord there and start it.
    Idempotent: a second run has nothing to do. What needs root is printed, never done."""
    from conveyor.ssh.setup import setup_hosts

    env = _environment(environment)
    results: list[HostSetup] = run(_with_connections(env, setup_hosts))
    if as_json:
        emit_json({"environment": environment, "hosts": [r.to_json() for r in results]})
    else:
        for result in results:
            for line in _describe_setup(result):
                say(line)
    bad = [r for r in results if not r.ok]
    if bad:
        raise _fail(len(bad), "not set up: " + ", ".join(r.host.name for r in bad))


def _describe_setup(result: HostSetup) -> list[str]:
    where = result.host.describe()
    if result.error is not None:
        return [f"{where}: {result.error}"] + ([f"  hint: {result.hint}"] if result.hint else [])
    lines = [f"{where}: {done}" for done in result.done]
    if not result.done and not result.as_root:
        lines.append(f"{where}: already set up, nothing to do")
    lines += [f"{where}: {note}" for note in result.notes]
    lines += [f"{where}: needs root; as root, run: {command}" for command in result.as_root]
    return lines
