"""What a framework detector found: the pieces of the `conveyor.yml` it proposes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Detected:
    """A project a detector recognised, and the configuration that deploys it.

    `service` holds the keys of the `web` service exactly as they are written in
    `conveyor.yml` (build, dependencies, run, health, env, writable, exclude,
    migrate, ...); `databases` the top-level `databases:` entries it needs.
    `notes` are what the user should check, printed by `conveyor init` and
    written as comments at the top of the file.
    """

    framework: str
    evidence: str
    service: dict[str, Any]
    databases: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
