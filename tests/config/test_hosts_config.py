"""`hosts:` of an environment: validation with key paths, and the hosts the SSH target
gets from `conveyor.ssh.inventory` (a list in conveyor.yml or an inventory file)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.config.loader import parse_config
from conveyor.errors import ConfigError, UsageError
from conveyor.plugins import TARGETS
from conveyor.ssh.hosts import HostSpec
from conveyor.ssh.inventory import environment_hosts, run_host, service_hosts

# `target: ssh` is accepted once the SSH target is registered (conveyor.plugins).
needs_ssh = pytest.mark.skipif("ssh" not in TARGETS, reason="the ssh target is not registered")

BASE = """\
project: fleet
services:
  web: {run: "serve $PORT"}
  worker: {run: "work", roles: [jobs], route: {path: /jobs}}
environments:
"""


def problems(environments: str, services: str = "") -> list[str]:
    text = BASE.replace("environments:\n", services + "environments:\n") + textwrap.indent(
        textwrap.dedent(environments), "  "
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {})
    return caught.value.issues


@needs_ssh
@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (
            "prod: {listen: ':80', target: ssh}",
            "environments/prod: target ssh needs `hosts:` (a list of {name, address, user}, "
            "or {inventory: FILE})",
        ),
        (
            "prod: {listen: ':80', target: ssh, hosts: []}",
            "environments/prod/hosts: at least one host is required",
        ),
        (
            """\
            prod:
              listen: ':80'
              target: ssh
              hosts:
                - {name: a, address: 10.0.0.1, user: u, roles: [web, jobs]}
                - {name: a, address: 10.0.0.2, user: u}
            """,
            'environments/prod/hosts/1/name: host "a" is already defined (at '
            "environments/prod/hosts/0)",
        ),
        (
            """\
            prod:
              listen: ':80'
              target: ssh
              hosts:
                - {name: a, address: 10.0.0.1, user: u, roles: [web, jobs]}
                - {name: b, address: 10.0.0.1, user: v}
            """,
            'environments/prod/hosts/1/address: 10.0.0.1:22 is already host "a"',
        ),
        (
            """\
            prod:
              listen: ':80'
              target: ssh
              hosts:
                - {name: a, address: 10.0.0.1, user: u, roles: [web, jobs], jump: bastion}
            """,
            'environments/prod/hosts/0/jump: unknown host "bastion" (hosts: a)',
        ),
        (
            """\
            prod:
              listen: ':80'
              target: ssh
              hosts:
                - {name: a, address: 10.0.0.1, user: u, roles: [web, jobs], jump: b}
                - {name: b, address: 10.0.0.2, user: u, jump: a}
            """,
            "environments/prod/hosts/0/jump: the jumps go round in a circle: a -> b -> a",
        ),
        (
            """\
            prod:
              listen: ':80'
              target: ssh
              hosts: [{name: a, address: 10.0.0.1, user: u}]
            """,
            'services/worker/roles: no host of environment "prod" has one of its roles (jobs; '
            "the hosts' roles: web, see environments/prod/hosts)",
        ),
        (
            """\
            prod:
              listen: ':80'
              target: ssh
              run_host: b
              hosts: [{name: a, address: 10.0.0.1, user: u, roles: [web, jobs]}]
            """,
            'environments/prod/run_host: unknown host "b" (hosts: a)',
        ),
        (
            """\
            prod:
              listen: ':80'
              target: ssh
              router_host: b
              hosts: [{name: a, address: 10.0.0.1, user: u, roles: [web, jobs]}]
            """,
            'environments/prod/router_host: unknown host "b" (hosts: a)',
        ),
        (
            """\
            prod:
              listen: ':80'
              target: ssh
              router: haproxy
              router_host: a
              hosts: [{name: a, address: 10.0.0.1, user: u, roles: [web, jobs]}]
            """,
            "environments/prod/router_host: the router on a host is Caddy (`router: caddy`); "
            'router "haproxy" runs where Conveyor runs: remove router_host or use '
            "`router: caddy`",
        ),
    ],
)
def test_host_lists_are_checked_with_key_paths(environment: str, expected: str) -> None:
    assert expected in problems(environment)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (
            "prod: {listen: ':80', hosts: [{name: a, address: 10.0.0.1, user: u}]}",
            "environments/prod/hosts: only `target: ssh` runs on hosts (this environment's "
            'target is "local"); add `target: ssh` or remove `hosts:`',
        ),
        (
            "prod: {listen: ':80', run_host: a}",
            "environments/prod/run_host: only `target: ssh` runs on hosts",
        ),
        (
            "prod: {listen: ':80', router_host: web1}",
            "environments/prod/router_host: only `target: ssh` runs on hosts; the router of a "
            '"local" environment runs where Conveyor runs ("local")',
        ),
        (
            "prod: {listen: ':80', router_host: Web_1}",
            'environments/prod/router_host: expected "local" (where Conveyor runs) or the name '
            'of one of the environment\'s hosts, got "Web_1"',
        ),
        (
            "prod: {listen: ':80', hosts: [{name: local, address: h, user: u}]}",
            'environments/prod/hosts/0/name: "local" is the name of the machine Conveyor runs '
            "on; pick another",
        ),
        (
            "prod: {listen: ':80', hosts: [{name: Web_1, address: h, user: u}]}",
            'environments/prod/hosts/0/name: invalid host name "Web_1": use lowercase letters, '
            'digits, "-" and ".", starting and ending with a letter or digit',
        ),
        (
            "prod: {listen: ':80', hosts: [{name: a, address: 'h:22', user: u, port: 0}]}",
            "environments/prod/hosts/0/port: expected a value >= 1, got 0",
        ),
        (
            "prod: {listen: ':80', hosts: [{name: a, address: 'h 2', user: u}]}",
            "environments/prod/hosts/0/address: expected a DNS name or an IP address (without "
            'port: see `port`), got "h 2"',
        ),
        (
            "prod: {listen: ':80', hosts: [{name: a, address: h}]}",
            "environments/prod/hosts/0/user: required",
        ),
        (
            "prod: {listen: ':80', hosts: web1}",
            'environments/prod/hosts: expected a list, got "web1"',
        ),
        (
            "prod: {listen: ':80', hosts: {inventory: x.json, hosts: []}}",
            "environments/prod/hosts/hosts: unknown key",
        ),
    ],
)
def test_host_settings_are_checked_with_key_paths(environment: str, expected: str) -> None:
    assert expected in problems(environment)


def _project(tmp_path: Path, environment: str) -> Path:
    (tmp_path / "conveyor.yml").write_text(
        BASE + textwrap.indent(textwrap.dedent(environment), "  ")
    )
    return tmp_path / "conveyor.yml"


@needs_ssh
def test_hosts_roles_jumps_identities_and_the_run_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "me"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "deploy").write_text("key")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "bastion").write_text("key")
    monkeypatch.setenv("HOME", str(home))
    loaded = load_config(
        _project(
            tmp_path,
            """\
            prod:
              listen: ':80'
              target: ssh
              run_host: jobs1
              hosts:
                - {name: bastion, address: gw.example.com, user: ops, port: 2222,
                   identity: keys/bastion, roles: []}
                - {name: web1, address: 10.0.0.5, user: deploy, identity: ~/.ssh/deploy,
                   jump: bastion}
                - {name: jobs1, address: 10.0.0.6, user: deploy, roles: [web, jobs],
                   jump: bastion}
            """,
        )
    )
    config, root = loaded.config, loaded.root
    bastion = HostSpec("bastion", "gw.example.com", "ops", 2222, tmp_path / "keys/bastion")
    web1 = HostSpec("web1", "10.0.0.5", "deploy", 22, home / ".ssh/deploy", bastion, ("web",))
    jobs1 = HostSpec("jobs1", "10.0.0.6", "deploy", 22, None, bastion, ("web", "jobs"))
    assert environment_hosts(config, "prod", root) == [bastion, web1, jobs1]
    assert service_hosts(config, "prod", "web", root) == [web1, jobs1]
    assert service_hosts(config, "prod", "worker", root) == [jobs1]
    assert run_host(config, "prod", "web", root) == jobs1  # run_host carries web
    assert web1.describe() == "web1 (deploy@10.0.0.5:22 via bastion)"


@needs_ssh
def test_a_missing_identity_file_names_the_key(tmp_path: Path) -> None:
    loaded = load_config(
        _project(
            tmp_path,
            """\
            prod:
              listen: ':80'
              target: ssh
              hosts: [{name: a, address: h, user: u, identity: nope, roles: [web, jobs]}]
            """,
        )
    )
    with pytest.raises(ConfigError) as caught:
        environment_hosts(loaded.config, "prod", loaded.root)
    assert caught.value.issues == [
        f"environments/prod/hosts/0/identity: no such file: {tmp_path}/nope"
    ]


def test_an_environment_without_hosts_is_a_usage_error(tmp_path: Path) -> None:
    loaded = load_config(_project(tmp_path, "staging: {listen: ':80'}"))
    with pytest.raises(
        UsageError, match=r'environment "staging" has no hosts \(its target is "local"\)'
    ):
        environment_hosts(loaded.config, "staging", loaded.root)


def _inventory(tmp_path: Path, hosts: list[object], **extra: object) -> Path:
    """An inventory as scripts/testhosts writes it."""
    (tmp_path / "client_ed25519").write_text("key")
    path = tmp_path / "inventory.json"
    data = {"subnet": "10.77.0.0/24", "identity": str(tmp_path / "client_ed25519"), **extra}
    path.write_text(json.dumps({**data, "hosts": hosts}))
    return path


INVENTORY_ENV = """\
fleet:
  listen: ':80'
  target: ssh
  hosts: {inventory: "${CONVEYOR_TESTHOSTS}"}
"""


@needs_ssh
def test_hosts_from_an_inventory_file(tmp_path: Path) -> None:
    path = _inventory(
        tmp_path,
        [
            {
                "name": "host1",
                "address": "10.77.0.11",
                "port": 22,
                "user": "cvhost1",
                "host_key": "ssh-ed25519 AAAA",
                "fingerprint": "SHA256:x",
            },
            {"name": "host2", "address": "10.77.0.12", "port": 22, "user": "cvhost2"},
        ],
    )
    services = "services:\n  web: {run: serve}\nenvironments:\n"
    (tmp_path / "conveyor.yml").write_text(
        "project: fleet\n" + services + textwrap.indent(INVENTORY_ENV, "  ")
    )
    loaded = load_config(tmp_path / "conveyor.yml", environ={"CONVEYOR_TESTHOSTS": str(path)})
    identity = tmp_path / "client_ed25519"
    assert environment_hosts(loaded.config, "fleet", loaded.root) == [
        HostSpec("host1", "10.77.0.11", "cvhost1", 22, identity, None, ("web",)),
        HostSpec("host2", "10.77.0.12", "cvhost2", 22, identity, None, ("web",)),
    ]


@needs_ssh
def test_an_inventory_gets_the_same_checks(tmp_path: Path) -> None:
    path = _inventory(
        tmp_path,
        [
            {"name": "host1", "address": "10.77.0.11", "user": "cvhost1"},
            {"name": "host1", "address": "10.77.0.12", "user": "cvhost2", "port": "x"},
            {"name": "host3", "address": "10.77.0.11", "user": "cvhost3"},
        ],
    )
    (tmp_path / "conveyor.yml").write_text(BASE + textwrap.indent(INVENTORY_ENV, "  "))
    loaded = load_config(tmp_path / "conveyor.yml", environ={"CONVEYOR_TESTHOSTS": str(path)})
    with pytest.raises(ConfigError) as caught:
        environment_hosts(loaded.config, "fleet", loaded.root)
    assert caught.value.source == str(path)
    assert caught.value.issues == [
        'hosts/1/port: input should be a valid integer, unable to parse string as an integer, got "x"'
    ]

    path.write_text(
        json.dumps(
            {
                "hosts": [
                    {"name": "host1", "address": "10.77.0.11", "user": "cvhost1"},
                    {"name": "host1", "address": "10.77.0.11", "user": "cvhost2"},
                ]
            }
        )
    )
    with pytest.raises(ConfigError) as caught:
        environment_hosts(loaded.config, "fleet", loaded.root)
    assert caught.value.issues == [
        'hosts/1/name: host "host1" is already defined (at hosts/0)',
        'hosts/1/address: 10.77.0.11:22 is already host "host1"',
    ]

    path.write_text(json.dumps({"hosts": [{"name": "host1", "address": "h", "user": "u"}]}))
    with pytest.raises(ConfigError) as caught:
        environment_hosts(loaded.config, "fleet", loaded.root)
    assert caught.value.issues == [
        'services/worker/roles: no host of environment "fleet" has one of its roles (jobs; '
        f"the hosts' roles: web, see environments/fleet/hosts (read from {path}))"
    ]

    path.unlink()
    with pytest.raises(ConfigError) as caught:
        environment_hosts(loaded.config, "fleet", loaded.root)
    assert caught.value.issues == ["no such file"]
    assert "scripts/testhosts up" in (caught.value.hint or "")


@needs_ssh
def test_run_as_of_a_service_is_refused_naming_the_user_to_log_in_as() -> None:
    text = BASE.replace('web: {run: "serve $PORT"}', 'web: {run: "serve $PORT", run_as: app}')
    text += textwrap.indent(
        textwrap.dedent(
            """\
            prod:
              listen: ':80'
              target: ssh
              hosts: [{name: a, address: 10.0.0.1, user: deploy, roles: [web, jobs]}]
            """
        ),
        "  ",
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {})
    assert caught.value.issues == [
        'services/web/run_as: environment "prod" runs on hosts over SSH, where instances run '
        "as each host's login user (its `user:`), never as another user; remove run_as, or "
        'log in to the hosts as "app" (`user: app`)'
    ]


@needs_ssh
def test_a_router_on_a_host_is_reached_at_that_hosts_address() -> None:
    hosts = "[{name: a, address: 10.0.0.1, user: u, roles: [web, jobs]}]"
    loopback = problems(
        f"prod: {{listen: '127.0.0.1:80', target: ssh, router_host: a, hosts: {hosts}}}"
    )
    assert (
        "environments/prod/listen: the router runs on host a (router_host), where "
        "127.0.0.1:80 is reachable from that host only; listen on its address (or 0.0.0.0)"
    ) in loopback
    inventory = problems(
        "prod: {listen: ':80', target: ssh, router_host: a, hosts: {inventory: x.json}}"
    )
    assert any(
        p.startswith("environments/prod/url: required: the router runs on host a")
        for p in inventory
    )
    text = BASE + f"  prod: {{listen: '0.0.0.0:80', target: ssh, router_host: a, hosts: {hosts}}}\n"
    assert parse_config(text, {}).environment("prod").effective_url == "http://10.0.0.1:80"


@needs_ssh
def test_a_router_on_a_host_does_not_take_tls_yet() -> None:
    found = problems(
        "prod: {listen: '0.0.0.0:443', target: ssh, router_host: a, "
        "tls: {certificate: site.pem, key: site.key}, "
        "hosts: [{name: a, address: 10.0.0.1, user: u, roles: [web, jobs]}]}"
    )
    assert any(
        p.startswith("environments/prod/tls: the router on a host (router_host a)") for p in found
    )
