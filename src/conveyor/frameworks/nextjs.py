"""Detects a Next.js app (create-next-app's layout): `next build` at build time, `next start`."""

from __future__ import annotations

from pathlib import Path

from conveyor.frameworks.model import Detected
from conveyor.frameworks.node import NODE_MODULES, installer, read_package

NEXT = f"{NODE_MODULES}/.bin/next"

# What `next start` writes in the release as it serves (measured on Next 16.4 with
# create-next-app's template, after serving /, a 404 and /favicon.ico; checked by
# tests/e2e/test_node_apps.py): the image optimizer's .next/cache/images, and the route
# cache, one file set a page or route handler it served, under .next/server/route-cache/
# APP_PAGE/<hash>/$/index.{html,meta,rsc,segments/} and APP_ROUTE/<hash>/$/favicon.ico.*.
WRITABLE = (".next/cache", ".next/server/route-cache")


def detect(root: Path) -> Detected | None:
    """A Next.js project: `next` in package.json's dependencies."""
    package = read_package(root)
    if package is None or not package.uses("next"):
        return None
    install = installer(root)  # the build needs the development dependencies (TypeScript...)
    build_script = package.scripts.get("build", "")
    build = "npm run build" if install.client == "npm" and "next build" in build_script else None
    service = {
        "dependencies": install.dependencies(),
        "build": [build or f"{NEXT} build"],
        # Turbopack's cache, kept from build to build: `next build` takes half the time
        "build_cache": [".next/cache"],
        "exclude": [".next/", f"{NODE_MODULES}/"],
        "writable": list(WRITABLE),
        "run": f'exec {NEXT} start -H "$HOST" -p "$PORT"',
        "env": {"NEXT_TELEMETRY_DISABLED": "1"},
        "health": {"type": "http", "path": "/", "expect_status": 200},
    }
    notes = (
        "NEXT_PUBLIC_* variables are read at build time: set them under services/web/env "
        "(a change makes a new release), not only in an environment",
        "writable lists what `next start` writes in the release as it serves; add the "
        "directories of any other file your app writes at run time",
        *install.notes(),
    )
    evidence = f"package.json depends on next; {install.lockfile or 'no lock file'}"
    return Detected(framework="Next.js", evidence=evidence, service=service, notes=notes)
