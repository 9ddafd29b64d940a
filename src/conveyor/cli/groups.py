"""A command group whose first argument, when it names none of its commands, goes to a
default command: `conveyor hosts ENV` is `conveyor hosts check ENV`."""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup


class DefaultCommandGroup(TyperGroup):
    """Subclasses set `default`, the command that takes what names no other."""

    default = ""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)
