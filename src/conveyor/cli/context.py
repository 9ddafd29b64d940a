"""Shared CLI state: where the config is, and opening the runtime lazily."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from conveyor.config import LoadedConfig
    from conveyor.engine.runtime import Runtime

T = TypeVar("T")


@dataclass
class CliState:
    config_path: Path | None = None
    server: str | None = None  # --server URL / CONVEYOR_SERVER: act through its API


STATE = CliState()


def load(defer_unset: bool = False) -> LoadedConfig:
    """The config. `defer_unset` for commands that start nothing: a `${VAR}` that is unset
    is then no error where its value can stay as written (`run:`, `env`)."""
    from conveyor.config import load_config

    return load_config(STATE.config_path, defer_unset=defer_unset)


def runtime(defer_unset: bool = False) -> Runtime:
    """The runtime of a command; `defer_unset` as for `load`."""
    from conveyor.engine.runtime import Runtime
    from conveyor.identity import current_user

    return Runtime.open(load(defer_unset), current_user())


def run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    return asyncio.run(coro)


JsonOption = typer.Option(
    False, "--json", help="Machine-readable output (documented in the README)."
)
YesOption = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
