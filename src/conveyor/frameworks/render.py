"""Turn what a detector found into the text of a `conveyor.yml`, checked by the loader."""

from __future__ import annotations

import re
import textwrap
from typing import Any

import yaml

from conveyor.errors import ConfigError
from conveyor.frameworks.model import Detected

DEFAULT_LISTEN = "127.0.0.1:8080"
SERVICE = "web"
_UNSET = re.compile(r'environment variable "\w+" is not set')


def project_name(directory_name: str) -> str:
    """A valid project name (`^[a-z][a-z0-9-]*$`) from a directory name."""
    name = re.sub(r"[^a-z0-9]+", "-", directory_name.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)
    return name or "app"


def config_document(detected: Detected, *, project: str, listen: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "project": project,
        "services": {SERVICE: {"source": ".", **detected.service}},
    }
    if detected.databases:
        document["databases"] = detected.databases
    document["environments"] = {"staging": {"listen": listen}}
    return document


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a heredoc in a build command) as `|` blocks, readable and editable."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render(detected: Detected, *, project: str, listen: str = DEFAULT_LISTEN) -> str:
    """The file `conveyor init` writes; raises ConfigError if it would not load."""
    from conveyor.config.loader import parse_config

    header = [
        "# Written by `conveyor init`: edit freely, then `conveyor validate`.",
        f"# Detected {detected.framework} ({detected.evidence}).",
    ]
    for note in detected.notes:
        header += textwrap.wrap(
            note,
            width=96,
            initial_indent="# Check: ",
            subsequent_indent="#   ",
            break_on_hyphens=False,
        )
    body = yaml.dump(
        config_document(detected, project=project, listen=listen),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=100,
    )
    text = "\n".join(header) + "\n" + body
    try:
        parse_config(text, {}, source="conveyor.yml (generated)")
    except ConfigError as exc:
        # `${DATABASE_URL}` is the user's to set before a deploy, not a fault of the file.
        if not all(_UNSET.search(issue) for issue in exc.issues):
            raise
    return text
