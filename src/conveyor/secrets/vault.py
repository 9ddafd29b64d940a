"""The encrypted file of an environment: `secrets/<env>.age` in the project, the dotenv
text of its secrets encrypted (age, ASCII armor) to the project's key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.redaction import register_secrets
from conveyor.secrets import SecretsError, dotenv

if TYPE_CHECKING:
    from pyrage.x25519 import Identity

DIRECTORY = "secrets"


def file_path(root: Path, environment: str) -> Path:
    return root / DIRECTORY / f"{environment}.age"


def read(root: Path, environment: str, identity: Identity) -> dict[str, str]:
    """The secrets of the file (none when it does not exist); all registered for masking."""
    import pyrage

    path = file_path(root, environment)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        text = pyrage.decrypt(data, [identity]).decode()
    except (pyrage.DecryptError, UnicodeDecodeError):
        raise SecretsError(
            f"cannot decrypt {path} with the project's age key",
            hint="the file was encrypted to another key (rotated?): get the current key "
            "from a teammate",
        ) from None
    try:
        values = dotenv.parse(text)
    except dotenv.DotenvError as exc:
        raise SecretsError(f"{path}: {exc}", hint="fix it with: conveyor secrets edit") from None
    register_secrets(values.values())
    return values


def write(root: Path, environment: str, values: dict[str, str], identity: Identity) -> Path:
    """Encrypt `values` to the key of `identity` into the environment's file (atomically)."""
    import pyrage

    path = file_path(root, environment)
    path.parent.mkdir(exist_ok=True)
    data = pyrage.encrypt(dotenv.render(values).encode(), [identity.to_public()], armored=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.rename(path)
    return path


def environments(root: Path) -> list[str]:
    """The environments with an encrypted file."""
    return sorted(p.stem for p in (root / DIRECTORY).glob("*.age"))
