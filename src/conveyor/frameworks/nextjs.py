"""Detects a nextjs project (not written yet: recognises nothing)."""

from __future__ import annotations

from pathlib import Path

from conveyor.frameworks.model import Detected


def detect(root: Path) -> Detected | None:
    return None
