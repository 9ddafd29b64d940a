"""What `conveyor status` needs from `conveyor.yml`, kept beside the state.

Loading the config means YAML plus pydantic models, about a quarter of a
second of start-up. After every successful `load_config` the few values that
status shows (project; per environment its URL, listen address, strategy and
the replicas of each service after overrides) are written to
`<home>/cache/config-summary.json`. `conveyor status` uses them while their key
still matches, and does the full load otherwise, which writes them again. The
file is a cache, never a second source of truth: only a full validation
writes it, and any doubt about it means a full load.

The key covers everything the summary is derived from: the text of the file,
its path, the value (or absence) of every environment variable the file
references through `${VAR}`, the Conveyor version and the modification times
of the modules that interpret the file (so that an editable install does not
serve a summary computed by older code). The variable names themselves are
stored with the summary; they are a function of the text, which the key
covers. Variable values are only hashed, never written out.

This module imports neither pydantic nor YAML.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor import __version__
from conveyor.config.reading import read_config_text
from conveyor.errors import ConfigError
from conveyor.paths import Paths

if TYPE_CHECKING:
    from conveyor.config.loader import LoadedConfig
    from conveyor.config.models import Config

__all__ = [
    "ConfigSummary",
    "EnvironmentSummary",
    "RecordingEnviron",
    "cache_key",
    "load_summary",
    "remember",
]

FORMAT = 1
"""Bump when the layout of the cache file or the meaning of a field changes."""

# The modules whose code decides what the summary contains: these, and every module of
# the `models` package (one per section of the file).
_INTERPRETERS = ("loader.py", "cache.py", "durations.py", "limits.py", "kinds.py")
_INTERPRETER_PACKAGES = ("models",)
_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class EnvironmentSummary:
    """One environment as status shows it."""

    name: str
    url: str
    """`effective_url`: the configured URL, else derived from `listen`."""
    listen: str
    strategy: str
    """The strategy type: "rolling" or "immediate"."""
    replicas: dict[str, int]
    """Service -> replicas in this environment (overrides applied), in file order."""
    target: str = "local"
    """Where its instances run (`target:`): status asks the hosts of any other."""
    router_host: str = "local"
    """Where its router runs (`router_host:`): status checks the listen address here only
    when it is this machine."""
    kinds: dict[str, str] | None = None
    """Service -> its kind (`conveyor.config.kinds`: web, worker, singleton); None: web."""

    def kind(self, service: str) -> str:
        return (self.kinds or {}).get(service, "web")


@dataclass(frozen=True)
class ConfigSummary:
    """The part of a validated config that `conveyor status` needs."""

    project: str
    environments: dict[str, EnvironmentSummary]
    """By name, in file order."""

    @classmethod
    def of(cls, config: Config) -> ConfigSummary:
        """The summary of a fully validated config."""
        from conveyor.config.kinds import service_kind

        environments = {
            name: EnvironmentSummary(
                name=name,
                url=env.effective_url,
                listen=env.listen,
                strategy=env.strategy.type,
                replicas={s: config.service_for(name, s).replicas for s in config.services},
                target=env.target,
                router_host=env.router_host,
                kinds={s: service_kind(svc) for s, svc in config.services.items()},
            )
            for name, env in config.environments.items()
        }
        return cls(project=config.project, environments=environments)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "environments": [
                {
                    "name": e.name,
                    "url": e.url,
                    "listen": e.listen,
                    "strategy": e.strategy,
                    "target": e.target,
                    "router_host": e.router_host,
                    "services": [
                        {"name": s, "replicas": n, "kind": e.kind(s)} for s, n in e.replicas.items()
                    ],
                }
                for e in self.environments.values()
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> ConfigSummary:
        """Rebuild from `to_json` output; `ValueError` when it does not have that shape."""
        try:
            environments = {}
            for e in data["environments"]:
                replicas = {_text(s["name"]): _count(s["replicas"]) for s in e["services"]}
                kinds = {_text(s["name"]): _text(s.get("kind", "web")) for s in e["services"]}
                env = EnvironmentSummary(
                    name=_text(e["name"]),
                    url=_text(e["url"]),
                    listen=_text(e["listen"]),
                    strategy=_text(e["strategy"]),
                    replicas=replicas,
                    target=_text(e.get("target", "local")),
                    router_host=_text(e.get("router_host", "local")),
                    kinds=kinds,
                )
                environments[env.name] = env
            return cls(project=_text(data["project"]), environments=environments)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a config summary: {exc!r}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


class RecordingEnviron(Mapping[str, str]):
    """A read-only view of an environment that records which names were looked up.

    `load_config` interpolates through it, so that afterwards `names` holds
    exactly the variables the file references.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        return self._environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def _interpreter_files() -> list[Path]:
    files = [_HERE / name for name in _INTERPRETERS]
    for package in _INTERPRETER_PACKAGES:
        files += sorted((_HERE / package).glob("*.py"))
    return files


def _code_stamp() -> list[list[int]]:
    stamp = []
    for path in _interpreter_files():
        try:
            st = path.stat()
        except OSError:
            stamp.append([0, 0])
        else:
            stamp.append([st.st_mtime_ns, st.st_size])
    return stamp


def cache_key(
    config_path: Path, text: str, variables: Iterable[str], environ: Mapping[str, str]
) -> str:
    """The key a summary of `text` (the file at `config_path`) is valid for."""
    material = {
        "format": FORMAT,
        "version": __version__,
        "code": _code_stamp(),
        "path": str(config_path),
        "text": hashlib.sha256(text.encode()).hexdigest(),
        "environ": [[name, environ.get(name)] for name in sorted(set(variables))],
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def remember(loaded: LoadedConfig, text: str, environ: RecordingEnviron) -> None:
    """Write the summary of a config that just passed validation; best effort.

    Nothing is written when the project's Conveyor home does not exist yet:
    validating a file must not create one.
    """
    paths = Paths.for_project(loaded.root)
    if not paths.home.is_dir():
        return
    variables = sorted(environ.names)
    document = {
        "format": FORMAT,
        "key": cache_key(loaded.path, text, variables, environ),
        "variables": variables,
        "summary": ConfigSummary.of(loaded.config).to_json(),
    }
    encoded = (json.dumps(document, indent=1) + "\n").encode()
    target = paths.config_summary
    with contextlib.suppress(OSError):
        if target.read_bytes() == encoded:
            return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # 0600 like the rest of the home's files that may hold interpolated values.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(encoded)
        tmp.replace(target)  # readers see the old file or the new one, never half
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def load_summary(
    config_path: Path, environ: Mapping[str, str] | None = None
) -> ConfigSummary | None:
    """The cached summary of the config file at `config_path`, if still valid; else None.

    `environ` (default `os.environ`) is the environment the config would be
    interpolated with.
    """
    environ = os.environ if environ is None else environ
    try:
        config_path = config_path.resolve()
        text = read_config_text(config_path, str(config_path))
        cached = json.loads(Paths.for_project(config_path.parent).config_summary.read_bytes())
    except (OSError, ValueError, ConfigError):  # ValueError: bad JSON
        return None
    try:
        if cached["format"] != FORMAT:
            return None
        variables = [_text(name) for name in cached["variables"]]
        if cached["key"] != cache_key(config_path, text, variables, environ):
            return None
        return ConfigSummary.from_json(cached["summary"])
    except (KeyError, TypeError, ValueError):
        return None
