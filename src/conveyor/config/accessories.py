"""`${accessories.NAME.KEY}`: an accessory's address in a service's `run` and `env`, and
the rules of `accessories:` across the file. Pure functions, no I/O.

The references are kept as written when `conveyor.yml` is read (the address is known
once the accessory has a port and a host) and filled in when an instance or a one-off
command of the service starts (`engine.accessories.addresses`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.config.durations import describe_value

if TYPE_CHECKING:
    from conveyor.config.models import Config

PREFIX = "accessories."
KEYS = ("host", "port", "url")
_REFERENCE = re.compile(r"\$\{accessories\.(?P<name>[^.}]*)\.(?P<key>[^}]*)\}")


@dataclass(frozen=True)
class AccessoryAddress:
    """Where services reach an accessory of an environment."""

    host: str  # the address it listens on (127.0.0.1, or its host's IP address)
    port: int
    url: str  # its `url:` template filled in

    def value(self, key: str) -> str:
        return {"host": self.host, "port": str(self.port), "url": self.url}[key]


def allowed_at(where: list[str | int]) -> bool:
    """Whether a reference may be written at the key path `where`: a service's `run` and
    `env` values (also the environments' `env` and per-service `env`)."""
    if len(where) >= 3 and where[0] == "services":
        return where[2] == "run" or (where[2] == "env" and len(where) == 4)
    if len(where) == 4 and where[0] == "environments":
        return where[2] == "env"
    if len(where) == 6 and where[0] == "environments":
        return where[2] == "services" and where[4] == "env"
    return False


def references(text: str) -> list[tuple[str, str]]:
    """The (name, key) of every reference in `text`, in order."""
    return [(m["name"], m["key"]) for m in _REFERENCE.finditer(text)] if "$" in text else []


def fill(text: str, addresses: Mapping[str, AccessoryAddress]) -> str:
    """`text` with every reference to an accessory of `addresses` filled in; others stay."""
    if "${accessories." not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        address = addresses.get(match["name"])
        if address is None or match["key"] not in KEYS:
            return match.group(0)
        return address.value(match["key"])

    return _REFERENCE.sub(replace, text)


def misplaced(body: str) -> str:
    """The problem of a reference written where it has no value."""
    return (
        f"{describe_value('${' + body + '}')}: an accessory's address is filled in only in a "
        "service's run and env (and the environments' env)"
    )


def _written(config: Config) -> Iterator[tuple[str, str, list[str]]]:
    """(key path, text, environments where it is in effect) of every value where references
    may be written (a service's env value an environment overrides is not in effect there)."""
    everywhere = list(config.environments)
    for name, service in config.services.items():
        run = service.run if isinstance(service.run, list) else [service.run]
        for index, part in enumerate(run):
            suffix = f"/{index}" if isinstance(service.run, list) else ""
            yield f"services/{name}/run{suffix}", part, everywhere
        for key, value in service.env.items():
            used = [e for e in everywhere if config.service_for(e, name).env.get(key) == value]
            yield f"services/{name}/env/{key}", value, used
    for env_name, environment in config.environments.items():
        for key, value in environment.env.items():
            yield f"environments/{env_name}/env/{key}", value, [env_name]
        for name, override in environment.services.items():
            for key, value in override.env.items():
                yield f"environments/{env_name}/services/{name}/env/{key}", value, [env_name]


def issues(config: Config) -> list[str]:
    """The `key/path: problem` lines of `accessories:` and of the references to them."""
    found: list[str] = []
    known = ", ".join(sorted(config.accessories)) or "none defined"
    for name in config.accessories:
        if name in config.services:
            found.append(
                f'accessories/{name}: a service is called "{name}" too; give the accessory '
                "another name (they share data directories and messages)"
            )
    for env_name, environment in config.environments.items():
        for name, override in environment.accessories.items():
            where = f"environments/{env_name}/accessories/{name}"
            if name not in config.accessories:
                found.append(f'{where}: unknown accessory "{name}" (accessories: {known})')
            elif override.host is not None and environment.target == "local":
                found.append(
                    f'{where}/host: environment "{env_name}" runs on this machine (target: '
                    "local), which has no other hosts"
                )
        found.extend(_host_issues(config, env_name))
    for where, text, environments in _written(config):
        for name, key in references(text):
            shown = describe_value("${accessories." + name + "." + key + "}")
            if name not in config.accessories:
                found.append(
                    f'{where}: unknown accessory "{name}" in {shown} (accessories: {known})'
                )
            elif key not in KEYS:
                found.append(f"{where}: {shown} has no value: use {', '.join(KEYS)}")
            else:
                for env_name in environments:
                    if name not in config.accessories_for(env_name):
                        found.append(
                            f'{where}: environment "{env_name}" has no accessory "{name}" '
                            f"(environments/{env_name}/accessories/{name} is false), but "
                            f"{shown} needs it there"
                        )
    return found


def _host_issues(config: Config, env_name: str) -> list[str]:
    """An accessory's host must be one of a `target: ssh` environment's hosts (when they are
    listed in the file; an inventory's are checked when it is read)."""
    environment = config.environments[env_name]
    if environment.target == "local" or not isinstance(environment.hosts, list):
        return []
    names = [h.name for h in environment.hosts]
    found = []
    for name, accessory in config.accessories_for(env_name).items():
        if accessory.host is not None and accessory.host not in names:
            override = environment.accessories.get(name)
            where = (
                f"environments/{env_name}/accessories/{name}/host"
                if override is not None and override.host is not None
                else f"accessories/{name}/host"
            )
            found.append(
                f'{where}: "{accessory.host}" is not a host of environment "{env_name}" '
                f"(hosts: {', '.join(names)})"
            )
    return found
