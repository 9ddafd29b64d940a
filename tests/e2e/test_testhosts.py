"""End to end: scripts/testhosts makes real SSH hosts in network namespaces and removes
them again (the fleet tests stand on it)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.testhosts import expected_host, hosts_up, namespace_prefix

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="needs openssh-server"),
]


def _ssh(inventory: dict[str, object], host: dict[str, str], *command: str) -> str:
    result = subprocess.run(
        [
            "ssh",
            "-i",
            str(inventory["identity"]),
            "-o",
            f"UserKnownHostsFile={inventory['known_hosts']}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{host['user']}@{host['address']}",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


def test_hosts_come_up_with_their_own_address_user_and_key_and_go_away(tmp_path: Path) -> None:
    with hosts_up(2, tmp_path / "hosts") as made:
        inventory = json.loads(made.path.read_text())
        hosts = inventory["hosts"]
        assert [(h["name"], h["address"], h["user"]) for h in hosts] == [
            expected_host(1),
            expected_host(2),
        ]
        assert hosts[0]["host_key"] != hosts[1]["host_key"]
        for host in hosts:
            # Its own network (the address is the namespace's) and its own user and home.
            seen = _ssh(inventory, host, "hostname -I; id -un; echo $HOME").split()
            assert seen == [host["address"], host["user"], f"/home/{host['user']}"]
        keyscan = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(tmp_path / "hosts" / "host1" / "ssh_host_ed25519_key")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert hosts[0]["fingerprint"] in keyscan
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert namespace_prefix() not in listed
    assert not Path(f"/home/{expected_host(1)[2]}").exists()
