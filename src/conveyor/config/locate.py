"""Finding `conveyor.yml`, without importing the models (pydantic) or YAML.

`conveyor status` locates the file this way to check its cached summary
(`conveyor.config.cache`) before deciding whether a full load is needed.
"""

from __future__ import annotations

from pathlib import Path

from conveyor.errors import ConfigError

__all__ = ["CONFIG_NAMES", "find_config", "locate_config"]

CONFIG_NAMES = ("conveyor.yml", "conveyor.yaml")
_HINT_NOT_FOUND = "run conveyor in your project directory or pass --config PATH"


def find_config(start: Path | None = None) -> Path | None:
    """The first conveyor.yml (or conveyor.yaml) in `start` (default: cwd) or its parents."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        for name in CONFIG_NAMES:
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def locate_config(path: Path | None = None) -> tuple[Path, str]:
    """The config file to read for `--config path` (None: search upwards from the cwd).

    Returns the file (not yet checked to exist when given explicitly) and how
    error messages name it. Raises `ConfigError` when there is nothing to read.
    """
    if path is None:
        cwd = Path.cwd()
        found = find_config(cwd)
        if found is None:
            raise ConfigError(
                [f"no conveyor.yml found in {cwd} or its parents"], hint=_HINT_NOT_FOUND
            )
        return found, found.name if found.parent == cwd.resolve() else str(found)
    path = Path(path)
    if path.is_dir():
        inside = next((path / n for n in CONFIG_NAMES if (path / n).is_file()), None)
        if inside is None:
            raise ConfigError([f"no conveyor.yml found in {path}"], source=str(path))
        return inside, str(inside)
    return path, str(path)
