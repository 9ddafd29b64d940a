"""Express and Next.js apps made by their own generators, cached between test runs.

express-generator and create-next-app run once per machine (the apps, with a
lock file, and npm's cache live in /tmp/conveyor-tests-generators); each test
gets a copy without node_modules, in its own git repository, as a user's
checkout would be. npm's cache makes the releases' `npm ci` work from disk.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path("/tmp/conveyor-tests-generators")
NPM_CACHE = CACHE / "npm-cache"
# What the apps' builds and installs need besides Conveyor's test environment.
NODE_ENV = {
    "npm_config_cache": str(NPM_CACHE),
    "npm_config_prefer_offline": "true",
    "npm_config_audit": "false",
    "npm_config_fund": "false",
    "npm_config_update_notifier": "false",
    "NEXT_TELEMETRY_DISABLED": "1",
}
_GENERATORS = {
    "express": [
        ["npx", "--yes", "express-generator@4", "--no-view", "app"],
        ["npm", "install", "--prefix", "app"],
    ],
    "nextjs": [
        ["npx", "--yes", "create-next-app@latest", "app", "--yes", "--use-npm", "--disable-git"],
    ],
}
_COPY_IGNORE = shutil.ignore_patterns("node_modules", ".next", ".git")


def generated(kind: str) -> Path:
    """The cached app `kind` ("express" or "nextjs"), generated on first use."""
    if shutil.which("npx") is None:
        pytest.skip("Node.js (npx) is not installed")
    CACHE.mkdir(parents=True, exist_ok=True)
    done = CACHE / kind / "app"
    with (CACHE / f".{kind}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers: one generates, the others wait
        if not (done / "package-lock.json").is_file():
            work = CACHE / f"{kind}.partial"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            for argv in _GENERATORS[kind]:
                subprocess.run(
                    argv,
                    cwd=work,
                    env={**os.environ, **NODE_ENV},
                    check=True,
                    capture_output=True,
                    timeout=600,
                    stdin=subprocess.DEVNULL,
                )
            shutil.rmtree(CACHE / kind, ignore_errors=True)
            work.rename(CACHE / kind)
    return done


def copy_app(kind: str, destination: Path) -> Path:
    """A fresh copy of the generated app at `destination` (no node_modules, no build)."""
    shutil.copytree(generated(kind), destination, ignore=_COPY_IGNORE)
    return destination
