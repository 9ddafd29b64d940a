"""Recognise a project made by a framework's own tools and propose its `conveyor.yml`.

Each module has `detect(root) -> Detected | None`; the first that recognises
the project wins, so the more specific come first (Next.js before Express,
Django before Flask), and a bare Procfile comes last.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conveyor.frameworks import alembic, django, express, fastapi, flask, nextjs, procfile
from conveyor.frameworks.model import Detected

__all__ = ["DETECTORS", "Detected", "detect"]

DETECTORS: tuple[Callable[[Path], Detected | None], ...] = (
    django.detect,
    fastapi.detect,
    flask.detect,
    nextjs.detect,
    express.detect,
    procfile.detect,
)


def detect(root: Path) -> Detected | None:
    """What `root` is, or None when no detector recognises it."""
    for detector in DETECTORS:
        found = detector(root)
        if found is not None:
            return alembic.with_alembic(root, found)
    return None
