"""`conveyor secrets init|set|list|rm|edit|rotate`: the project's encrypted secrets.

Values are read from standard input (never the command line) and never printed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli.context import JsonOption, load
from conveyor.cli.output import emit_json, say, warn
from conveyor.errors import UsageError

if TYPE_CHECKING:
    from pyrage.x25519 import Identity

    from conveyor.config import LoadedConfig

app = typer.Typer(
    help="The project's encrypted secrets (secrets/<env>.age) and their key.",
    no_args_is_help=True,
)

EnvArgument = typer.Argument(..., help="Environment.")
NameArgument = typer.Argument(..., help="The secret's name (a variable name).")


def _environment(loaded: LoadedConfig, environment: str) -> None:
    envs = loaded.config.environments
    if environment not in envs:
        raise UsageError(
            f'unknown environment "{environment}" (environments are: '
            f"{', '.join(sorted(envs)) or 'none'})"
        )


def _identity(loaded: LoadedConfig) -> Identity:
    from conveyor.secrets.keys import load_identity

    return load_identity(loaded.config.project)


def _check_name(name: str) -> None:
    from conveyor.config.models.secrets import _VARIABLE

    if not _VARIABLE.match(name):
        raise UsageError(
            f"invalid secret name {name!r}", hint="use letters, digits and _ (not first a digit)"
        )


@app.command("init")
def init() -> None:
    """Make the project's age key (kept outside the project, mode 0600)."""
    from conveyor.secrets import keys, vault

    loaded = load(defer_unset=True)
    project = loaded.config.project
    path = keys.key_path(project)
    if path.exists() or os.environ.get(keys.KEY_VARIABLE):
        raise UsageError(
            f"project {project} has a key already ({keys.key_source(project)})",
            hint="make a new one and re-encrypt every file with: conveyor secrets rotate",
        )
    existing = vault.environments(loaded.root)
    if existing:
        raise UsageError(
            f"secrets/{existing[0]}.age exists: it is encrypted to a key you do not have",
            hint=f"get the key from a teammate and save it as {path} (mode 0600)",
        )
    path, identity, _ = keys.write_new_key(project)
    say(f"made the age key of {project}: {path} (mode 0600)")
    say(f"  public key: {identity.to_public()}")
    say(
        "  keep a copy somewhere safe and share it with teammates by a private channel; "
        f"in CI, set {keys.KEY_VARIABLE} to its last line"
    )


def _read_value(name: str) -> str:
    """The value on standard input: asked without echo on a terminal, else read whole
    (one trailing newline removed)."""
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value of {name} (not shown): ")
    else:
        value = sys.stdin.read()
        if value.endswith("\n"):
            value = value[:-1]
            if value.endswith("\r"):
                value = value[:-1]
    if not value:
        raise UsageError(f"no value for {name} on standard input", hint="pipe it in: ... | ")
    return value


@app.command("set")
def set_secret(environment: str = EnvArgument, name: str = NameArgument) -> None:
    """Store NAME in ENVIRONMENT's encrypted file; the value is read from standard input."""
    from conveyor.config.models.secrets import EncryptedSecret
    from conveyor.redaction import register_secrets
    from conveyor.secrets import vault

    loaded = load(defer_unset=True)
    _environment(loaded, environment)
    _check_name(name)
    identity = _identity(loaded)
    values = vault.read(loaded.root, environment, identity)
    value = _read_value(name)
    register_secrets([value])
    existed = name in values
    values[name] = value
    path = vault.write(loaded.root, environment, values, identity)
    say(f"{'updated' if existed else 'added'} {name} in {path.relative_to(loaded.root)}")
    declared = loaded.config.secrets_for(environment).get(name)
    if not isinstance(declared, EncryptedSecret):
        warn(
            f"{name} is not declared as encrypted under secrets: of {environment} in "
            f"{loaded.path}: add `{name}: encrypted` there so that deploys use it"
        )


@app.command("rm")
def rm_secret(environment: str = EnvArgument, name: str = NameArgument) -> None:
    """Remove NAME from ENVIRONMENT's encrypted file."""
    from conveyor.secrets import vault

    loaded = load(defer_unset=True)
    _environment(loaded, environment)
    identity = _identity(loaded)
    values = vault.read(loaded.root, environment, identity)
    if name not in values:
        raise UsageError(f"{name} is not in secrets/{environment}.age")
    del values[name]
    vault.write(loaded.root, environment, values, identity)
    say(f"removed {name} from secrets/{environment}.age")
    if name in loaded.config.secrets_for(environment):
        warn(f"{name} is still declared under secrets: in {loaded.path}: deploys now refuse")


@app.command("list")
def list_secrets(environment: str = EnvArgument, as_json: bool = JsonOption) -> None:
    """The secrets of ENVIRONMENT: names and providers, never values."""
    from conveyor.config.models.secrets import EncryptedSecret
    from conveyor.secrets import SecretsError, vault

    loaded = load(defer_unset=True)
    _environment(loaded, environment)
    declared = loaded.config.secrets_for(environment)
    stored: set[str] | None = None
    if vault.file_path(loaded.root, environment).exists() or any(
        isinstance(s, EncryptedSecret) for s in declared.values()
    ):
        try:
            stored = set(vault.read(loaded.root, environment, _identity(loaded)))
        except SecretsError as exc:
            warn(f"cannot tell what the encrypted file holds: {exc.message}")
    rows: list[dict[str, Any]] = []
    for name, source in sorted(declared.items()):
        row: dict[str, Any] = {
            "name": name,
            "provider": source.provider,
            "source": source.describe(name, environment),
        }
        if isinstance(source, EncryptedSecret):
            row["stored"] = None if stored is None else name in stored
        rows.append(row)
    undeclared = sorted((stored or set()) - set(declared))
    if as_json:
        emit_json({"environment": environment, "secrets": rows, "undeclared": undeclared})
        return
    if not rows and not undeclared:
        say(f"{environment} has no secrets")
    for row in rows:
        note = {True: "", False: "  MISSING from the file", None: "  (file not readable)"}
        say(f"{row['name']:<24} {row['source']}{note[row.get('stored', True)]}")
    for name in undeclared:
        say(f"{name:<24} in secrets/{environment}.age, not declared under secrets:")


@app.command("edit")
def edit(environment: str = EnvArgument) -> None:
    """Edit ENVIRONMENT's secrets (dotenv) in $EDITOR; the file is re-encrypted after."""
    from conveyor.redaction import register_secrets
    from conveyor.secrets import SecretsError, dotenv, vault

    loaded = load(defer_unset=True)
    _environment(loaded, environment)
    identity = _identity(loaded)
    values = vault.read(loaded.root, environment, identity)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    shm = Path("/dev/shm")
    private = tempfile.mkdtemp(prefix="conveyor-secrets-", dir=shm if shm.is_dir() else None)
    path = Path(private) / f"{environment}.env"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(dotenv.render(values))
        done = subprocess.run([*shlex.split(editor), str(path)], check=False)
        if done.returncode != 0:
            raise SecretsError(f"{editor} exited {done.returncode}: nothing changed")
        try:
            edited = dotenv.parse(path.read_text())
        except dotenv.DotenvError as exc:
            raise SecretsError(f"the edited secrets: {exc}; nothing changed") from None
    finally:
        _shred(path)
        Path(private).rmdir()
    register_secrets(edited.values())
    if edited == values:
        say("no change")
        return
    vault.write(loaded.root, environment, edited, identity)
    added = sorted(set(edited) - set(values))
    removed = sorted(set(values) - set(edited))
    changed = sorted(n for n in set(edited) & set(values) if edited[n] != values[n])
    parts = [
        f"{label} {', '.join(names)}"
        for label, names in (("added", added), ("changed", changed), ("removed", removed))
        if names
    ]
    say(f"secrets/{environment}.age: {'; '.join(parts)}")


def _shred(path: Path) -> None:
    """Overwrite, then remove, a file that held secrets in clear."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    with path.open("r+b") as handle:
        handle.write(b"\0" * size)
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()


@app.command("rotate")
def rotate() -> None:
    """Make a new key and re-encrypt every environment's file to it (the old key is kept
    beside the new one, renamed)."""
    from conveyor.secrets import keys, vault

    loaded = load(defer_unset=True)
    project = loaded.config.project
    old = _identity(loaded)
    contents = {env: vault.read(loaded.root, env, old) for env in vault.environments(loaded.root)}
    path, identity, kept = keys.write_new_key(project)
    for env, values in contents.items():
        vault.write(loaded.root, env, values, identity)
    say(f"new age key of {project}: {path} (public key {identity.to_public()})")
    if kept is not None:
        say(f"  the previous key is kept as {kept}")
    say(f"  re-encrypted: {', '.join(f'secrets/{e}.age' for e in contents) or 'no file'}")
    say(f"  commit the files, give teammates the new key, and update {keys.KEY_VARIABLE} in CI")
