"""Turning an environment's `secrets:` into values, or into the list of what is missing.

Every value resolved is registered with `conveyor.redaction` at once: from then on
no output of the process shows it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.config.models.secrets import CommandSecret, DotenvSecret, EncryptedSecret, EnvSecret
from conveyor.redaction import redact_registered, register_secrets
from conveyor.secrets import SecretsError, dotenv, keys, vault

if TYPE_CHECKING:
    from conveyor.config import LoadedConfig
    from conveyor.config.models.secrets import SecretSource


@dataclass
class _Resolution:
    """One pass over an environment's secrets: what was found, and what is missing."""

    loaded: LoadedConfig
    environment: str
    environ: Mapping[str, str]
    run_commands: bool
    values: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    _encrypted: dict[str, str] | None = None
    _dotenv: dict[Path, dict[str, str]] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.loaded.root

    def run(self) -> None:
        sources = self.loaded.config.secrets_for(self.environment)
        for name, source in sources.items():
            try:
                value = self._one(name, source)
            except SecretsError as exc:
                self.problems.append(f"{name} ({source.describe(name, self.environment)}): {exc}")
                continue
            if value is not None:
                self.values[name] = value
        register_secrets(self.values.values())

    def _one(self, name: str, source: SecretSource) -> str | None:
        if isinstance(source, EncryptedSecret):
            found = self._encrypted_values()
            if name not in found:
                raise SecretsError(
                    f"not in {vault.file_path(self.root, self.environment).relative_to(self.root)}"
                )
            return found[name]
        if isinstance(source, EnvSecret):
            if source.env not in self.environ:
                raise SecretsError(f"${source.env} is not set")
            return self.environ[source.env]
        if isinstance(source, DotenvSecret):
            key = source.key or name
            found = self._dotenv_values(Path(source.dotenv).expanduser())
            if key not in found:
                raise SecretsError(f"no {key} in {source.dotenv}")
            return found[key]
        assert isinstance(source, CommandSecret)
        return self._command(source)

    def _encrypted_values(self) -> dict[str, str]:
        if self._encrypted is None:
            identity = keys.load_identity(self.loaded.config.project)
            self._encrypted = vault.read(self.root, self.environment, identity)
        return self._encrypted

    def _dotenv_values(self, path: Path) -> dict[str, str]:
        path = path if path.is_absolute() else self.root / path
        if path not in self._dotenv:
            try:
                text = path.read_text()
            except FileNotFoundError:
                raise SecretsError(f"{path} does not exist") from None
            except OSError as exc:
                raise SecretsError(f"cannot read {path}: {exc.strerror or exc}") from None
            try:
                self._dotenv[path] = dotenv.parse(text)
            except dotenv.DotenvError as exc:
                raise SecretsError(f"{path}: {exc}") from None
            register_secrets(self._dotenv[path].values())
        return self._dotenv[path]

    def _command(self, source: CommandSecret) -> str | None:
        program = source.command[0]
        if not self.run_commands:
            if (
                shutil.which(program, path=self.environ.get("PATH")) is None
                and not (self.root / program).is_file()
            ):
                raise SecretsError(f"{program} is not found")
            return None
        try:
            done = subprocess.run(
                source.command,
                cwd=self.root,
                env=dict(self.environ),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=source.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise SecretsError(f"{program} is not found") from None
        except subprocess.TimeoutExpired:
            raise SecretsError(f"took more than {source.timeout:g} s") from None
        except OSError as exc:
            raise SecretsError(f"could not run: {exc.strerror or exc}") from None
        value = done.stdout.decode(errors="replace").rstrip("\r\n")
        if done.returncode != 0:
            register_secrets([value])  # it may have printed part of the secret
            said = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            detail = f": {redact_registered(said[0])[:200]}" if said else ""
            raise SecretsError(f"exited {done.returncode}{detail}")
        if not value:
            raise SecretsError("printed nothing")
        return value


def resolve(
    loaded: LoadedConfig, environment: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The values of the secrets of `environment`, registered for masking.

    Raises `SecretsError` naming every secret that cannot be resolved and its provider.
    """
    resolution = _Resolution(loaded, environment, os.environ if environ is None else environ, True)
    resolution.run()
    if resolution.problems:
        count = len(resolution.problems)
        raise SecretsError(
            f"{count} secret{'s' * (count != 1)} of {environment} cannot be resolved:\n"
            + "\n".join(f"  {p}" for p in resolution.problems),
            hint="conveyor validate " + environment + " lists them; nothing was changed",
        )
    return resolution.values


def missing(
    loaded: LoadedConfig, environment: str, environ: Mapping[str, str] | None = None
) -> list[str]:
    """What prevents the secrets of `environment` from resolving, one line each (no value);
    commands are not run, only looked for."""
    resolution = _Resolution(loaded, environment, os.environ if environ is None else environ, False)
    resolution.run()
    return resolution.problems
