"""The hosts of an environment as `HostSpec`s: from its `hosts:` list, or from the
inventory file it names (the JSON `scripts/testhosts up` writes).

An inventory is read when the hosts are needed (not when conveyor.yml is
validated: it may not exist yet), and gets the same checks as a list in
conveyor.yml (`conveyor.config.hosts`); its problems are a `ConfigError` naming
the file and the key in it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from conveyor.config.durations import describe_value
from conveyor.config.hosts import (
    HostConfig,
    InventoryHosts,
    carries,
    host_list_issues,
    service_issues,
)
from conveyor.config.models import Config
from conveyor.errors import ConfigError, UsageError
from conveyor.ssh.hosts import HostSpec

__all__ = ["environment_hosts", "run_host", "service_hosts"]


def environment_hosts(config: Config, environment: str, root: Path) -> list[HostSpec]:
    """Every host of `environment`, in the order written (jumps resolved).

    `root` is the directory of conveyor.yml: relative `identity` and `inventory`
    paths start there. Raises `UsageError` for an environment without hosts and
    `ConfigError` for an inventory that cannot be read or is invalid.
    """
    return [spec for spec, _ in _hosts(config, environment, root)]


def service_hosts(config: Config, environment: str, service: str, root: Path) -> list[HostSpec]:
    """The hosts of `environment` that carry `service` (share one of its roles)."""
    roles = config.service(service).roles
    hosts = environment_hosts(config, environment, root)
    return [spec for spec in hosts if carries(spec.roles, roles)]


def run_host(config: Config, environment: str, service: str, root: Path) -> HostSpec:
    """Where `service`'s migrations and one-off commands run: the environment's
    `run_host` when it carries the service, else the service's first host."""
    hosts = service_hosts(config, environment, service, root)
    chosen = config.environment(environment).run_host
    for host in hosts:
        if host.name == chosen:
            return host
    return hosts[0]


def _hosts(config: Config, environment: str, root: Path) -> list[tuple[HostSpec, HostConfig]]:
    env = config.environment(environment)
    if env.hosts is None:
        raise UsageError(
            f'environment "{environment}" has no hosts (its target is "{env.target}")',
            hint="hosts are for `target: ssh` environments, listed under `hosts:` in conveyor.yml",
        )
    where = f"environments/{environment}/hosts"
    if isinstance(env.hosts, InventoryHosts):
        path = _resolve(env.hosts.inventory, root)
        configs, base = _read_inventory(path), path.parent
        where = f"{where} (read from {path})"
        issues = host_list_issues(configs, "hosts")
        if issues:
            raise ConfigError(issues, source=str(path))
    else:
        configs, base = list(env.hosts), root
    issues = service_issues(config, environment, configs, where)
    if issues:
        raise ConfigError(issues)
    plain: dict[str, HostSpec] = {}
    for index, host in enumerate(configs):
        identity = _resolve(host.identity, base) if host.identity is not None else None
        if identity is not None and not identity.is_file():
            raise ConfigError(
                [f"{where}/{index}/identity: no such file: {identity}"],
                hint="give the private key the host's user accepts (its public half is in "
                "~/.ssh/authorized_keys on the host)",
            )
        plain[host.name] = HostSpec(
            name=host.name,
            address=host.address,
            user=host.user,
            port=host.port,
            identity=identity,
            roles=tuple(host.roles),
        )
    resolved: dict[str, HostSpec] = {}

    def with_jump(name: str) -> HostSpec:
        if name not in resolved:
            spec, jump = plain[name], by_name[name].jump
            if jump is not None:
                spec = HostSpec(**{**spec.__dict__, "jump": with_jump(jump)})
            resolved[name] = spec
        return resolved[name]

    by_name = {host.name: host for host in configs}
    return [(with_jump(host.name), host) for host in configs]


def _resolve(path: str, base: Path) -> Path:
    """`~` is the deployer's home; relative paths start at `base`."""
    return (base / Path(path).expanduser()).absolute()


def _read_inventory(path: Path) -> list[HostConfig]:
    """The hosts of an inventory file: {"identity": FILE, "hosts": [{name, address,
    port, user}, ...]} (other keys are ignored)."""
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            ["no such file"],
            source=str(path),
            hint='`eval "$(scripts/testhosts up 3)"` writes one for the test hosts',
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError([f"cannot read it: {exc}"], source=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), list):
        raise ConfigError(['expected a JSON object with a "hosts" list'], source=str(path))
    identity = data.get("identity")
    hosts: list[HostConfig] = []
    issues: list[str] = []
    for index, entry in enumerate(data["hosts"]):
        if not isinstance(entry, dict):
            issues.append(f"hosts/{index}: expected an object")
            continue
        keys = ("name", "address", "user", "port", "identity")
        fields = {k: entry[k] for k in keys if k in entry}
        if identity is not None:
            fields.setdefault("identity", identity)
        try:
            hosts.append(HostConfig.model_validate(fields))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                key = "/".join(str(p) for p in error["loc"])
                message = error.get("ctx", {}).get("message") or (
                    f"{error['msg'][:1].lower()}{error['msg'][1:]}, got "
                    + describe_value(error["input"])
                )
                issues.append(f"hosts/{index}/{key}: {message}")
    if not hosts and not issues:
        issues.append("hosts: at least one host is required")
    if issues:
        raise ConfigError(issues, source=str(path))
    return hosts
