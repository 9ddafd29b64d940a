"""`hosts:` of an environment: the machines the SSH target runs its instances on.

    environments:
      production:
        target: ssh
        hosts:
          - {name: web1, address: 10.0.0.5, user: deploy, identity: ~/.ssh/deploy}
          - {name: web2, address: 10.0.0.6, user: deploy, jump: bastion}
          - {name: bastion, address: bastion.example.com, user: deploy, roles: []}
        run_host: web1      # migrations and one-off commands (default: a service's first host)
      fleet:
        target: ssh
        hosts: {inventory: "${CONVEYOR_TESTHOSTS}"}   # scripts/testhosts' JSON file

Roles: a host carries the services that share one of its roles; both sides default
to `[web]`, so without any `roles:` every service runs on every host. A host with
`roles: []` carries no service (a bastion). The router runs where Conveyor runs
(`router_host: local`, the default) or on one of the hosts (`router_host: web1`, with
`router: caddy`): traffic then enters there, and Conveyor drives it over SSH.

The models here only check what one host entry says; `config_issues` checks the
list against itself and the services (names, addresses, jumps, roles), and the
same checks run on an inventory's hosts when `conveyor.ssh.inventory` reads it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PlainValidator, Tag

from conveyor.config.durations import describe_value, problem

if TYPE_CHECKING:
    from conveyor.config.models import Config
    from conveyor.config.models.environments import EnvironmentConfig

__all__ = [
    "DEFAULT_ROLES",
    "HOST_TARGET",
    "LOCAL_HOST",
    "HostConfig",
    "HostName",
    "HostsSpec",
    "InventoryHosts",
    "Role",
    "RouterHost",
    "config_issues",
    "host_list_issues",
    "hosts_field",
    "roles_field",
    "router_host_field",
    "run_host_field",
]

HOST_TARGET = "ssh"  # the target that runs on `hosts:`
ROUTER_ON_HOSTS = "caddy"  # the router that runs on one of them (`router_host:`)
LOCAL_HOST = "local"  # where Conveyor runs (the local target's one host)
DEFAULT_ROLES = ("web",)

_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?")
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_ADDRESS = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"  # a DNS name or an IPv4 address
    r"|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"  # an IPv6 address
)
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


def _check_host_name(value: object) -> str:
    if not isinstance(value, str) or not _HOST_NAME.fullmatch(value):
        raise problem(
            f"invalid host name {describe_value(value)}: use lowercase letters, digits, "
            '"-" and ".", starting and ending with a letter or digit'
        )
    if value == LOCAL_HOST:
        raise problem(f'"{LOCAL_HOST}" is the name of the machine Conveyor runs on; pick another')
    return value


def _check_role(value: object) -> str:
    if not isinstance(value, str) or not _ROLE.fullmatch(value):
        raise problem(
            f"invalid role {describe_value(value)}: use lowercase letters, digits, "
            '"-" and "_", starting with a letter'
        )
    return value


def _check_address(value: object) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise problem(
            f"expected a DNS name or an IP address (without port: see `port`), got "
            f"{describe_value(value)}"
        )
    return value


def _check_user(value: object) -> str:
    if not isinstance(value, str) or not _USER.fullmatch(value):
        raise problem(f"invalid user name {describe_value(value)}")
    return value


def _check_router_host(value: object) -> str:
    if value == LOCAL_HOST:
        return LOCAL_HOST
    if not isinstance(value, str) or not _HOST_NAME.fullmatch(value):
        raise problem(
            f'expected "{LOCAL_HOST}" (where Conveyor runs) or the name of one of the '
            f"environment's hosts, got {describe_value(value)}"
        )
    return value


HostName = Annotated[str, PlainValidator(_check_host_name)]
Role = Annotated[str, PlainValidator(_check_role)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HostConfig(_Model):
    """One machine reached over SSH."""

    name: HostName = Field(
        description="What Conveyor calls the host in every message, `status` and `logs`."
    )
    address: Annotated[str, PlainValidator(_check_address)] = Field(
        description="DNS name or IP address its sshd listens on."
    )
    user: Annotated[str, PlainValidator(_check_user)] = Field(
        description="The user Conveyor logs in as; an ordinary user, not root."
    )
    port: int = Field(22, ge=1, le=65535, description="Port of its sshd (default 22).")
    identity: str | None = Field(
        None,
        min_length=1,
        description="Private key file to log in with (`~` is the deployer's home; relative "
        "paths are relative to conveyor.yml). Default: the SSH agent and ~/.ssh's keys.",
    )
    roles: list[Role] = Field(
        default_factory=lambda: list(DEFAULT_ROLES),
        description="Which services the host carries: those sharing one of its roles (default "
        '["web"]; [] for a host that carries none, e.g. a bastion).',
    )
    jump: HostName | None = Field(
        None, description="Name of another host of the list to reach this one through."
    )


class InventoryHosts(_Model):
    """Hosts read from an inventory file instead of being listed."""

    inventory: str = Field(
        min_length=1,
        description="A JSON inventory as `scripts/testhosts up` writes it (`hosts`: name, "
        "address, port, user; `identity`), relative to conveyor.yml. Its hosts have the "
        'role "web".',
    )


def _hosts_kind(value: Any) -> str:
    return "inventory" if isinstance(value, Mapping) else "list"


HostsSpec = Annotated[
    Annotated[list[HostConfig], Tag("list")] | Annotated[InventoryHosts, Tag("inventory")],
    Discriminator(_hosts_kind),
]


def hosts_field() -> Any:
    return Field(
        None,
        description="The hosts of a `target: ssh` environment: a list of {name, address, user, "
        "port, identity, roles, jump}, or {inventory: FILE}.",
    )


def router_host_field() -> Any:
    return Field(
        LOCAL_HOST,
        description=f'Where the router runs: "{LOCAL_HOST}", the machine Conveyor runs on '
        "(default), or the name of one of the environment's hosts (`router: caddy`).",
    )


RouterHost = Annotated[str, PlainValidator(_check_router_host)]


def run_host_field() -> Any:
    return Field(
        None,
        description="The host migrations and one-off commands run on, for the services it "
        "carries (default: each service's first host).",
    )


def roles_field() -> Any:
    return Field(
        default_factory=lambda: list(DEFAULT_ROLES),
        description="On a `target: ssh` environment, the hosts the service runs on: those "
        'sharing one of these roles (default ["web"]).',
    )


def carries(host_roles: Iterable[str], service_roles: Iterable[str]) -> bool:
    """Whether a host with `host_roles` runs a service with `service_roles`."""
    return not set(host_roles).isdisjoint(service_roles)


# --- rules across hosts and services ----------------------------------------------------


def host_list_issues(hosts: Sequence[HostConfig], where: str) -> list[str]:
    """Problems of a host list on its own: duplicate names and addresses, unknown jumps,
    jump cycles. `where` is the key path of the list ("environments/prod/hosts")."""
    issues: list[str] = []
    names: dict[str, int] = {}
    addresses: dict[tuple[str, int], str] = {}
    for index, host in enumerate(hosts):
        if host.name in names:
            issues.append(
                f'{where}/{index}/name: host "{host.name}" is already defined (at '
                f"{where}/{names[host.name]})"
            )
        else:
            names[host.name] = index
        key = (host.address.lower(), host.port)
        if key in addresses:
            issues.append(
                f'{where}/{index}/address: {host.address}:{host.port} is already host "'
                f'{addresses[key]}"'
            )
        else:
            addresses[key] = host.name
    known = ", ".join(sorted(names))
    by_name = {host.name: host for host in hosts}
    for index, host in enumerate(hosts):
        if host.jump is None:
            continue
        if host.jump not in by_name:
            issues.append(f'{where}/{index}/jump: unknown host "{host.jump}" (hosts: {known})')
            continue
        seen = [host.name]
        hop: HostConfig | None = by_name[host.jump]
        while hop is not None:
            if hop.name in seen:
                issues.append(
                    f"{where}/{index}/jump: the jumps go round in a circle: "
                    + " -> ".join([*seen, hop.name])
                )
                break
            seen.append(hop.name)
            hop = by_name.get(hop.jump) if hop.jump is not None else None
    return issues


def service_issues(
    config: Config, environment: str, hosts: Sequence[HostConfig], where: str
) -> list[str]:
    """Problems of the services on these hosts: a service no host carries, a run_host
    that is not a host."""
    issues: list[str] = []
    env = config.environments[environment]
    known = ", ".join(sorted({h.name for h in hosts}))
    for key, name in (("run_host", env.run_host), ("router_host", env.router_host)):
        if name not in (None, LOCAL_HOST) and name not in {h.name for h in hosts}:
            issues.append(
                f'environments/{environment}/{key}: unknown host "{name}" (hosts: {known})'
            )
    offered = sorted({role for host in hosts for role in host.roles})
    for name, service in config.services.items():
        if not any(carries(host.roles, service.roles) for host in hosts):
            wanted = ", ".join(service.roles) or "none"
            issues.append(
                f'services/{name}/roles: no host of environment "{environment}" has one of '
                f"its roles ({wanted}; the hosts' roles: {', '.join(offered) or 'none'}, "
                f"see {where})"
            )
    return issues


def config_issues(config: Config) -> list[str]:
    """The `key/path: problem` lines of every environment's hosts (the loader's rules
    across fields). An inventory's hosts are checked when it is read."""
    issues: list[str] = []
    for name, env in config.environments.items():
        where = f"environments/{name}/hosts"
        if env.target == HOST_TARGET and env.hosts is None:
            issues.append(
                f"environments/{name}: target {HOST_TARGET} needs `hosts:` (a list of "
                "{name, address, user}, or {inventory: FILE})"
            )
        elif env.target != HOST_TARGET and env.hosts is not None:
            issues.append(
                f"{where}: only `target: {HOST_TARGET}` runs on hosts (this environment's "
                f'target is "{env.target}"); add `target: {HOST_TARGET}` or remove `hosts:`'
            )
            continue
        elif env.target != HOST_TARGET and env.run_host is not None:
            issues.append(
                f"environments/{name}/run_host: only `target: {HOST_TARGET}` runs on hosts"
            )
        if env.router_host != LOCAL_HOST:
            if env.target != HOST_TARGET:
                issues.append(
                    f"environments/{name}/router_host: only `target: {HOST_TARGET}` runs on "
                    f'hosts; the router of a "{env.target}" environment runs where Conveyor '
                    f'runs ("{LOCAL_HOST}")'
                )
            elif env.router != ROUTER_ON_HOSTS:
                issues.append(
                    f"environments/{name}/router_host: the router on a host is Caddy "
                    f'(`router: {ROUTER_ON_HOSTS}`); router "{env.router}" runs where '
                    f"Conveyor runs: remove router_host or use `router: {ROUTER_ON_HOSTS}`"
                )
            issues.extend(router_listen_issues(name, env))
        if env.target == HOST_TARGET:
            issues.extend(run_as_issues(config, name))
        issues.extend(fleet_strategy_issues(name, env))
        if isinstance(env.hosts, list):
            if not env.hosts:
                issues.append(f"{where}: at least one host is required")
                continue
            issues.extend(host_list_issues(env.hosts, where))
            issues.extend(service_issues(config, name, env.hosts, where))
    return issues


def router_listen_issues(environment: str, env: EnvironmentConfig) -> list[str]:
    """A router on a host must be reachable: not on its loopback, and, listening on every
    interface of a host read from an inventory, with the `url:` to reach it by. No `tls:` yet."""
    if env.tls is not None:
        return [
            f"environments/{environment}/tls: the router on a host (router_host "
            f"{env.router_host}) does not serve HTTPS yet: its certificate files are on this "
            "machine. Use `router_host: local`, or terminate TLS in front of the host"
        ]
    host = env.listen_host
    if host.startswith("127.") or host in ("::1", "localhost"):
        return [
            f"environments/{environment}/listen: the router runs on host {env.router_host} "
            f"(router_host), where {env.listen} is reachable from that host only; listen on "
            "its address (or 0.0.0.0)"
        ]
    if host in ("", "0.0.0.0", "::") and env.url is None and not isinstance(env.hosts, list):
        return [
            f"environments/{environment}/url: required: the router runs on host "
            f"{env.router_host} of an inventory and listens on every interface "
            f"({env.listen}); give the URL it answers at (smoke tests and messages use it), "
            "or listen on its address"
        ]
    return []


def run_as_issues(config: Config, environment: str) -> list[str]:
    """`run_as:` of the services of an environment on hosts: refused, since instances there
    run as each host's login user (Conveyor logs in as an ordinary user, never root)."""
    return [
        f'services/{name}/run_as: environment "{environment}" runs on hosts over SSH, where '
        f"instances run as each host's login user (its `user:`), never as another user; "
        f'remove run_as, or log in to the hosts as "{service.run_as}" (`user: '
        f"{service.run_as}`)"
        for name, service in config.services.items()
        if service.run_as is not None
    ]


def fleet_strategy_issues(name: str, env: Any) -> list[str]:
    """Problems of the settings that act on several hosts: `strategy.batch` and `parallel`
    outside `target: ssh`, and `batch` beside the instance counts it replaces."""
    where = f"environments/{name}"
    issues: list[str] = []
    if env.target != HOST_TARGET and "parallel" in env.model_fields_set:
        issues.append(
            f"{where}/parallel: only `target: {HOST_TARGET}` acts on several hosts (this "
            f'environment\'s target is "{env.target}"); remove `parallel:`'
        )
    strategy = env.strategy
    if getattr(strategy, "batch", None) is None:
        return issues
    at = f"{where}/strategy/batch"
    if env.target != HOST_TARGET:
        issues.append(
            f"{at}: batches are of hosts, and only `target: {HOST_TARGET}` runs on hosts (this "
            f'environment\'s target is "{env.target}"); use max_surge/max_unavailable instead'
        )
    if strategy.type != "rolling":
        issues.append(
            f"{at}: only the rolling strategy replaces hosts in batches, not {strategy.type}"
        )
    given = strategy.model_fields_set
    if "max_surge" in given:
        issues.append(
            f"{at}: batch and max_surge conflict: with batch, all the instances of a batch's "
            "hosts start beside the old ones; remove max_surge (or batch)"
        )
    if "max_unavailable" in given and strategy.max_unavailable not in (0, "0", "0%"):
        issues.append(
            f"{at}: batch and max_unavailable conflict: a batch stops its old instances only "
            "once its new ones serve, so none is ever unavailable; remove max_unavailable "
            "(or batch)"
        )
    return issues
