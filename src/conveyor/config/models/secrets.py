"""`secrets:`: the variables whose values come from a provider, never from conveyor.yml.

secrets:
  SECRET_KEY: encrypted                      # secrets/<env>.age (conveyor secrets set)
  STRIPE_KEY: {env: STRIPE_LIVE_KEY}         # the deployer's environment
  DB_PASSWORD: {command: [pass, show, db]}   # a command's standard output
  SMTP_PASSWORD: {dotenv: ~/.config/erp/production.env}  # a dotenv file outside the repo
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, WithJsonSchema

from conveyor.config.durations import describe_value, problem
from conveyor.config.models.base import _Model

ENCRYPTED = "encrypted"
PROVIDERS = (ENCRYPTED, "env", "command", "dotenv")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_variable(value: object) -> str:
    if isinstance(value, str) and _VARIABLE.match(value):
        return value
    raise problem(
        f"invalid variable name {describe_value(value)} (letters, digits and _, not first a digit)"
    )


Variable = Annotated[str, BeforeValidator(_check_variable), WithJsonSchema({"type": "string"})]


class EncryptedSecret(_Model):
    """From the project's encrypted file, `secrets/<environment>.age`."""

    encrypted: Literal[True] = True

    @property
    def provider(self) -> str:
        return ENCRYPTED

    def describe(self, name: str, environment: str) -> str:
        return f"encrypted in secrets/{environment}.age"


class EnvSecret(_Model):
    """From a variable of the deployer's environment."""

    env: Variable = Field(description="The variable of the environment Conveyor runs in.")

    @property
    def provider(self) -> str:
        return "env"

    def describe(self, name: str, environment: str) -> str:
        return f"environment variable ${self.env}"


class CommandSecret(_Model):
    """The standard output of a command (trailing newline removed)."""

    command: list[str] = Field(
        min_length=1, description='The command, an argv list: ["pass", "show", "erp/db"].'
    )
    timeout: float = Field(30.0, gt=0, description="Seconds the command may take (default 30).")

    @property
    def provider(self) -> str:
        return "command"

    def describe(self, name: str, environment: str) -> str:
        return f"command `{' '.join(self.command)}`"


class DotenvSecret(_Model):
    """From a dotenv file outside the repository (`~` is the deployer's home)."""

    dotenv: str = Field(min_length=1, description="The dotenv file's path.")
    key: Variable | None = Field(None, description="Its key (default: the secret's name).")

    @property
    def provider(self) -> str:
        return "dotenv"

    def describe(self, name: str, environment: str) -> str:
        return f"dotenv {self.dotenv} key {self.key or name}"


SecretSource = EncryptedSecret | EnvSecret | CommandSecret | DotenvSecret
_MODELS: dict[str, type[_Model]] = {
    ENCRYPTED: EncryptedSecret,
    "env": EnvSecret,
    "command": CommandSecret,
    "dotenv": DotenvSecret,
}


def _source(value: object) -> Any:
    """`encrypted`, or a mapping naming one provider, as its model's input."""
    if value == ENCRYPTED:
        return {ENCRYPTED: True}
    if isinstance(value, _Model):
        return value
    if isinstance(value, dict):
        named = [p for p in PROVIDERS[1:] if p in value]
        if len(named) == 1:
            return value
        if len(named) > 1:
            raise problem(f"name one provider, not {' and '.join(named)}")
    shown = (
        f"a mapping with {', '.join(map(str, value)) or 'no key'}"
        if isinstance(value, dict)
        else describe_value(value)
    )
    raise problem(
        f"expected encrypted, {{env: VAR}}, {{command: [...]}} or {{dotenv: FILE}}, got {shown}"
    )


def _provider(value: object) -> str | None:
    if isinstance(value, dict):
        return next((p for p in _MODELS if p in value), None)
    return getattr(value, "provider", None)


Secret = Annotated[
    Annotated[EncryptedSecret, Tag(ENCRYPTED)]
    | Annotated[EnvSecret, Tag("env")]
    | Annotated[CommandSecret, Tag("command")]
    | Annotated[DotenvSecret, Tag("dotenv")],
    Discriminator(_provider),
    BeforeValidator(_source),
    WithJsonSchema(
        {
            "oneOf": [
                {"const": ENCRYPTED},
                {"type": "object", "required": ["env"]},
                {"type": "object", "required": ["command"]},
                {"type": "object", "required": ["dotenv"]},
            ]
        }
    ),
]
Secrets = dict[Variable, Secret]


def secrets_field() -> Any:
    return Field(
        default_factory=dict,
        description="Variables whose values come from a provider at start: encrypted (the "
        "project's secrets/<env>.age), {env: VAR}, {command: [...]} or {dotenv: FILE}.",
    )
