"""FastAPI: a module with `app = FastAPI()`; uvicorn."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conveyor.frameworks.model import Detected
from conveyor.frameworks.python import (
    COMMON_EXCLUDES,
    VENV,
    imports,
    module_name,
    python_files,
    virtualenv,
)
from conveyor.frameworks.routes import health_path

_APP = re.compile(r"^(\w+)\s*=\s*FastAPI\(", re.MULTILINE)


def detect(root: Path) -> Detected | None:
    files = [f for f in python_files(root) if imports(f, "fastapi")]
    for path in files:
        app = _APP.search(path.read_text(errors="replace"))
        if app is not None:
            return _detected(root, path, app.group(1), files)
    return None


def _detected(root: Path, path: Path, app: str, files: list[Path]) -> Detected:
    module = module_name(root, path)
    env = virtualenv(root, "uvicorn", ["fastapi"])
    service: dict[str, Any] = dict(env.service)
    # /docs exists in every app that does not switch it off.
    health = health_path(files, "/docs")
    service["run"] = f'exec {VENV}/bin/uvicorn {module}:{app} --host "$HOST" --port "$PORT"'
    service["health"] = {"type": "http", "path": health, "expect_status": 200}
    service["exclude"] = [*COMMON_EXCLUDES]
    return Detected(
        framework="FastAPI",
        evidence=f"{path.relative_to(root)}: {app} = FastAPI()",
        service=service,
        notes=env.notes,
    )
