"""Secrets: values of variables that come from a provider at start, never from conveyor.yml.

`conveyor.config.models.secrets` reads `secrets:`; `keys` finds the age key of a
project, `vault` reads and writes the encrypted file `secrets/<env>.age`, `dotenv`
is its content's format, and `resolve` turns an environment's `secrets:` into
values (registered with `conveyor.redaction` so that no output shows them).
"""

from __future__ import annotations

from conveyor.errors import ConveyorError


class SecretsError(ConveyorError):
    """A secret cannot be read, written or resolved."""
