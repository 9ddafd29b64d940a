"""The age key (identity) that decrypts a project's `secrets/<env>.age` files.

Looked for, in order: `$CONVEYOR_AGE_KEY` (the key itself, for CI),
`$CONVEYOR_AGE_KEY_FILE` (a file holding it), then
`$XDG_CONFIG_HOME/conveyor/keys/<project>.key` (default `~/.config/...`, mode
0600), which `conveyor secrets init` writes. The key never lives in the project.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.paths import make_dir
from conveyor.redaction import register_secrets
from conveyor.secrets import SecretsError

if TYPE_CHECKING:
    from pyrage.x25519 import Identity

KEY_VARIABLE = "CONVEYOR_AGE_KEY"
KEY_FILE_VARIABLE = "CONVEYOR_AGE_KEY_FILE"


def keys_dir() -> Path:
    """Where `conveyor secrets init` keeps keys: outside every project."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "conveyor" / "keys"


def key_path(project: str) -> Path:
    return keys_dir() / f"{project}.key"


def key_source(project: str) -> str:
    """Where the key of `project` comes from, for messages."""
    if os.environ.get(KEY_VARIABLE):
        return f"${KEY_VARIABLE}"
    if os.environ.get(KEY_FILE_VARIABLE):
        return f"${KEY_FILE_VARIABLE} ({os.environ[KEY_FILE_VARIABLE]})"
    return str(key_path(project))


def load_identity(project: str) -> Identity:
    """The project's key; `SecretsError` saying how to get one when there is none."""
    from pyrage import IdentityError
    from pyrage.x25519 import Identity

    text = os.environ.get(KEY_VARIABLE)
    where = f"${KEY_VARIABLE}"
    if not text:
        file = Path(os.environ.get(KEY_FILE_VARIABLE) or key_path(project)).expanduser()
        where = str(file)
        try:
            text = file.read_text()
        except FileNotFoundError:
            raise SecretsError(
                f"no age key for project {project}: {file} does not exist",
                hint=f"get the key from a teammate and save it there (mode 0600), set "
                f"{KEY_VARIABLE} (CI), or make a new one: conveyor secrets init",
            ) from None
        except OSError as exc:
            raise SecretsError(f"cannot read the age key {file}: {exc.strerror or exc}") from None
    key = _key_line(text)
    register_secrets([key])
    try:
        return Identity.from_str(key)
    except (IdentityError, ValueError):
        raise SecretsError(
            f"the age key in {where} is not an age secret key (AGE-SECRET-KEY-1...)"
        ) from None


def _key_line(text: str) -> str:
    """The key of an age key file (comments, as age-keygen writes, skipped)."""
    lines = [line.strip() for line in text.splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    return keys[0] if keys else ""


def write_new_key(project: str) -> tuple[Path, Identity, Path | None]:
    """Make a key and save it (0600) as the project's; the previous one, if any, is kept
    beside it with a time stamp. (path, key, where the previous key went)."""
    from pyrage.x25519 import Identity

    identity = Identity.generate()
    path = key_path(project)
    make_dir(path.parent, 0o700)
    kept = None
    if path.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = path.with_name(f"{path.name}.{stamp}.old")
        path.rename(kept)
    text = (
        f"# Conveyor age key of project {project}, made {datetime.now(UTC):%Y-%m-%d}\n"
        f"# public key: {identity.to_public()}\n{identity}\n"
    )
    register_secrets([str(identity)])
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.rename(path)
    return path, identity, kept
