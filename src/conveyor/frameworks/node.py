"""What Node.js detectors read: package.json and the lock file that says which client installs.

Pure functions of the project's files: nothing is run, nothing is installed.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NODE_MODULES = "node_modules"


@dataclass(frozen=True)
class Package:
    """The parts of a package.json a detector looks at."""

    dependencies: frozenset[str]
    dev_dependencies: frozenset[str]
    scripts: dict[str, str] = field(default_factory=dict)
    main: str | None = None

    def uses(self, name: str) -> bool:
        """Whether `name` is a dependency (run time or development)."""
        return name in self.dependencies or name in self.dev_dependencies


@dataclass(frozen=True)
class Installer:
    """How the project's dependencies are installed, from the lock file it has."""

    client: str  # npm, yarn or pnpm
    lockfile: str | None
    command: str  # installs exactly what the lock file says (or, without one, resolves)

    def dependencies(self) -> dict[str, Any]:
        """The service's `dependencies:` entry: node_modules, reused while these files hold."""
        files = ["package.json"] + ([self.lockfile] if self.lockfile else [])
        return {"paths": [NODE_MODULES], "files": files, "install": [self.command]}

    def notes(self) -> tuple[str, ...]:
        if self.lockfile is None:
            return (
                "no lock file: every release resolves its dependencies anew with "
                "`npm install`; run `npm install` and commit package-lock.json for "
                "repeatable builds (init then writes `npm ci`)",
            )
        return ()


def read_package(root: Path) -> Package | None:
    """The project's package.json, or None when it has none (or one that is not JSON)."""
    try:
        data = json.loads((root / "package.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    scripts = data.get("scripts")
    main = data.get("main")
    return Package(
        dependencies=_names(data.get("dependencies")),
        dev_dependencies=_names(data.get("devDependencies")),
        scripts={k: v for k, v in scripts.items() if isinstance(v, str)}
        if isinstance(scripts, dict)
        else {},
        main=main if isinstance(main, str) else None,
    )


def installer(root: Path, *, production: bool = False) -> Installer:
    """The install command for the lock file the project has (npm's when it has none).

    `production` leaves development dependencies out (an app without a build step).
    """
    if (root / "pnpm-lock.yaml").is_file():
        prod = " --prod" if production else ""
        return Installer("pnpm", "pnpm-lock.yaml", f"pnpm install --frozen-lockfile{prod}")
    if (root / "yarn.lock").is_file():
        if (root / ".yarnrc.yml").is_file():  # Yarn 2+ (Berry)
            return Installer("yarn", "yarn.lock", "yarn install --immutable")
        prod = " --production" if production else ""
        return Installer("yarn", "yarn.lock", f"yarn install --frozen-lockfile{prod}")
    omit = " --omit=dev" if production else ""
    if (root / "package-lock.json").is_file():
        return Installer("npm", "package-lock.json", f"npm ci{omit}")
    if (root / "npm-shrinkwrap.json").is_file():
        return Installer("npm", "npm-shrinkwrap.json", f"npm ci{omit}")
    return Installer("npm", None, f"npm install{omit}")


def node_script(command: str | None) -> str | None:
    """The file a `node FILE` script runs (`node ./bin/www` -> `bin/www`), else None."""
    if not command:
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if len(words) != 2 or words[0] != "node" or words[1].startswith("-"):
        return None
    return words[1].removeprefix("./")


def _names(section: object) -> frozenset[str]:
    return frozenset(section) if isinstance(section, dict) else frozenset()
