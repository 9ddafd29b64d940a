"""Conveyor: deployment orchestrator."""

import sys
import types

__version__ = "0.1.0"


def _without_httpx_command_line() -> None:
    """httpx imports its own command line, `httpx._main`, whenever rich, pygments and
    click are installed (they come with typer): 0.2 s of CPU at each start of a Conveyor
    command that makes an HTTP request (measured: 0.92 s -> 0.70 s to import the deploy
    path), for a program Conveyor never runs. A stand-in takes its place unless httpx
    was imported already; `httpx.main()` then says how to get the real one."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main", "Conveyor's stand-in for httpx's CLI.")

    def main(*args: object, **kwargs: object) -> None:
        raise SystemExit("httpx's command line is not loaded in Conveyor; run `httpx` itself")

    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in


_without_httpx_command_line()
