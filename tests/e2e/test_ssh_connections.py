"""End to end: Conveyor's SSH connections to real sshd test hosts (scripts/testhosts):
host keys checked, commands quoted once, one connection per host, errors naming the
host."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import TargetError
from conveyor.ssh import known_hosts
from conveyor.ssh.connection import Connections
from tests.support.testhosts import Inventory, expected_host, hosts_up

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    with hosts_up(2, tmp_path_factory.mktemp("testhosts") / "hosts") as inventory:
        yield inventory


def _trusted(inventory: Inventory, tmp_path: Path) -> Path:
    """A known_hosts file of the home with the hosts' keys, as `hosts trust` records them."""
    path = tmp_path / "known_hosts"
    for host in inventory.hosts:
        key_name = host["address"]
        known_hosts.record(path, key_name, host["host_key"])
    return path


def test_an_unknown_host_key_is_refused_with_its_fingerprint(
    hosts: Inventory, tmp_path: Path
) -> None:
    async def attempt() -> None:
        async with Connections(tmp_path / "known_hosts") as connections:
            await connections.run(hosts.spec(0), ["true"], timeout=10)

    with pytest.raises(TargetError) as caught:
        asyncio.run(attempt())
    error = caught.value
    _, address, user = expected_host(1)
    assert error.message == (
        f"host host1 ({user}@{address}:22): its SSH host key is not known "
        f"(it offers {hosts.hosts[0]['fingerprint']})"
    )
    assert "conveyor hosts trust" in (error.hint or "")
    assert not (tmp_path / "known_hosts").exists()  # nothing recorded behind the user's back


def test_a_changed_host_key_is_refused(hosts: Inventory, tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    # The key recorded for host1's address is host2's: as if host1 had been replaced.
    known_hosts.record(path, hosts.hosts[0]["address"], hosts.hosts[1]["host_key"])

    async def attempt() -> None:
        async with Connections(path) as connections:
            await connections.run(hosts.spec(0), ["true"], timeout=10)

    with pytest.raises(TargetError, match=r"host host1 .*: its SSH host key has CHANGED") as caught:
        asyncio.run(attempt())
    assert hosts.hosts[0]["fingerprint"] in caught.value.message


def test_commands_are_quoted_once_and_share_one_connection_per_host(
    hosts: Inventory, tmp_path: Path
) -> None:
    trusted = _trusted(hosts, tmp_path)
    tricky = ["a b", "$HOME", "'quoted'", 'say "hi"; rm -rf /', "*"]

    async def session() -> tuple[list[str], int, str, list[str]]:
        async with Connections(trusted) as connections:
            echoed = await connections.run(hosts.spec(0), ["printf", "%s\\n", *tricky], timeout=10)
            users = await asyncio.gather(
                *(connections.run(hosts.spec(i % 2), ["id", "-un"], timeout=10) for i in range(20))
            )
            opened = len(connections._open)
            local = tmp_path / "release.tar"
            local.write_bytes(b"x" * 100_000)
            await connections.put(hosts.spec(1), local, "release.tar")
            size = await connections.run(
                hosts.spec(1), ["stat", "-c", "%s %U", "release.tar"], timeout=10
            )
            return (
                echoed.stdout.splitlines(),
                opened,
                size.stdout.strip(),
                [u.stdout.strip() for u in users],
            )

    lines, opened, size, users = asyncio.run(session())
    assert lines == tricky  # no expansion, no word splitting, nothing run
    assert opened == 2  # twenty commands, two hosts, two connections
    assert sorted(set(users)) == [expected_host(1)[2], expected_host(2)[2]]
    assert size == f"100000 {expected_host(2)[2]}"


def test_exit_status_and_output_come_back(hosts: Inventory, tmp_path: Path) -> None:
    trusted = _trusted(hosts, tmp_path)

    async def session() -> tuple[int, str]:
        async with Connections(trusted) as connections:
            done = await connections.run(
                hosts.spec(0), ["sh", "-c", "echo oops >&2; exit 3"], timeout=10
            )
            return done.exit_status, done.stderr

    assert asyncio.run(session()) == (3, "oops\n")


def test_a_wrong_user_and_a_closed_port_are_errors_naming_the_host(
    hosts: Inventory, tmp_path: Path
) -> None:
    trusted = _trusted(hosts, tmp_path)

    async def attempt(**changes: object) -> None:
        async with Connections(trusted, timeout=5) as connections:
            await connections.run(hosts.spec(0, **changes), ["true"], timeout=5)

    with pytest.raises(
        TargetError,
        match=rf"^host host1 \(nobody@{re.escape(expected_host(1)[1])}:22\): SSH login refused",
    ):
        asyncio.run(attempt(user="nobody"))
    with pytest.raises(TargetError) as caught:
        asyncio.run(attempt(port=2222))
    _, address, user = expected_host(1)
    assert caught.value.message.startswith(f"host host1 ({user}@{address}:2222) is unreachable:")
    assert "conveyor hosts ENV" in (caught.value.hint or "")


def test_a_host_behind_a_jump_host(hosts: Inventory, tmp_path: Path) -> None:
    trusted = _trusted(hosts, tmp_path)

    async def session() -> str:
        async with Connections(trusted) as connections:
            behind = hosts.spec(1, jump=hosts.spec(0))
            done = await connections.run(behind, ["hostname", "-I"], timeout=10)
            return done.stdout.strip()

    assert asyncio.run(session()) == hosts.hosts[1]["address"]
