"""Turn what a detector found into the text of a `conveyor.yml`, checked by the loader."""

from __future__ import annotations

import re
from typing import Any

import yaml

from conveyor.frameworks.model import Detected

DEFAULT_LISTEN = "127.0.0.1:8080"
SERVICE = "web"


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


def render(detected: Detected, *, project: str, listen: str = DEFAULT_LISTEN) -> str:
    """The file `conveyor init` writes; raises ConfigError if it would not load."""
    from conveyor.config.loader import parse_config

    header = [
        "# Written by `conveyor init`: edit freely, then `conveyor validate`.",
        f"# Detected {detected.framework} ({detected.evidence}).",
    ]
    header += [f"# Check: {note}" for note in detected.notes]
    body = yaml.safe_dump(
        config_document(detected, project=project, listen=listen),
        sort_keys=False,
        default_flow_style=False,
        width=100,
    )
    text = "\n".join(header) + "\n" + body
    parse_config(text, {}, source="conveyor.yml (generated)")
    return text
