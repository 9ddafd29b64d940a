"""Detects an Express app (express-generator's layout first: `bin/www`, listening on $PORT)."""

from __future__ import annotations

from pathlib import Path

from conveyor.frameworks.model import Detected
from conveyor.frameworks.node import NODE_MODULES, installer, node_script, read_package

# Where an Express app that is not from express-generator usually starts.
_ENTRY_POINTS = ("bin/www", "server.js", "app.js", "index.js")


def detect(root: Path) -> Detected | None:
    """An Express project: `express` in package.json's dependencies and a file to run."""
    package = read_package(root)
    if package is None or "express" not in package.dependencies:
        return None
    entry = _entry(root, node_script(package.scripts.get("start")), package.main)
    if entry is None:
        return None
    generated = entry == "bin/www"
    install = installer(root, production=True)
    evidence = "package.json depends on express; " + (
        "bin/www from express-generator" if generated else f"it starts with `node {entry}`"
    )
    notes = (
        f"`node {entry}` must listen on $PORT (express-generator's bin/www does)",
        "Express listens on all network interfaces: it ignores HOST=127.0.0.1, so "
        "the instance ports are reachable from other machines unless a firewall stops "
        "them (pass a host to app.listen / server.listen to change that)",
        "the health check asks for / and wants a 200: point health/path at a cheap "
        "page that answers 200 if / does not",
        *install.notes(),
    )
    service = {
        "dependencies": install.dependencies(),
        "exclude": [f"{NODE_MODULES}/"],
        "run": ["node", entry],
        "env": {"NODE_ENV": "production"},
        "health": {"type": "http", "path": "/", "expect_status": 200},
    }
    return Detected(framework="Express", evidence=evidence, service=service, notes=notes)


def _entry(root: Path, start: str | None, main: str | None) -> str | None:
    """The file that starts the app: `npm start`'s, else package.json's main, else a usual
    name; None when none of them exists."""
    for candidate in (start, main, *_ENTRY_POINTS):
        if candidate and (root / candidate).is_file():
            return candidate
    return None
