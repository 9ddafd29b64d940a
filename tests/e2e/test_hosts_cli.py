"""End to end: `conveyor hosts trust`, `conveyor setup` and `conveyor hosts` against real
sshd test hosts (scripts/testhosts), driven through the CLI as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.plugins import TARGETS
from conveyor.ssh import known_hosts
from conveyor.ssh.connection import Connections
from conveyor.ssh.layout import RemoteLayout
from tests.support.project import Project, free_port, git_project
from tests.support.testhosts import Inventory, hosts_up, namespace_prefix

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        "ssh" not in TARGETS, reason="needs the ssh target registered (conveyor.targets.ssh)"
    ),
]

CONFIG = """\
project: {project}
services:
  web:
    run: python3 -m http.server $PORT
environments:
  fleet:
    listen: 127.0.0.1:{port}
    target: ssh
    hosts: {{inventory: "${{CONVEYOR_TESTHOSTS}}"}}
"""


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    with hosts_up(2, tmp_path_factory.mktemp("testhosts") / "hosts") as inventory:
        yield inventory


def _project(tmp_path: Path, hosts: Inventory, name: str) -> Project:
    """A project whose `fleet` environment runs on the test hosts; each test has its own
    project name, so its directory and supervisord on the hosts are its own."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "conveyor.yml").write_text(CONFIG.format(project=name, port=free_port()))
    project = git_project(root, tmp_path / "home")
    project.env["CONVEYOR_TESTHOSTS"] = str(hosts.path)
    return project


def _known_hosts(project: Project) -> Path:
    return project.home / "known_hosts"


def _remote(hosts: Inventory, project: Project, index: int, argv: list[str]) -> tuple[int, str]:
    """Run `argv` on test host `index` with the keys the project trusted."""

    async def session() -> tuple[int, str]:
        async with Connections(_known_hosts(project)) as connections:
            done = await connections.run(hosts.spec(index), argv, timeout=30)
            return done.exit_status, done.stdout

    return asyncio.run(session())


def test_trust_asks_shows_fingerprints_and_records_only_with_a_yes(
    hosts: Inventory, tmp_path: Path
) -> None:
    project = _project(tmp_path, hosts, "trustme")
    fingerprints = [h["fingerprint"] for h in hosts.hosts]

    refused = project.run("hosts", "trust", "fleet", check=False)  # no terminal, no --yes
    assert refused.returncode == 1
    for host, fingerprint in zip(hosts.hosts, fingerprints, strict=True):
        assert f"{host['name']} ({host['user']}@{host['address']}:22): {fingerprint} (new)" in (
            refused.stdout
        )
    assert "needs confirmation and there is no terminal" in refused.stderr
    assert "--yes" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not _known_hosts(project).exists()  # nothing recorded

    trusted = project.run("hosts", "trust", "fleet", "--yes")
    for host, fingerprint in zip(hosts.hosts, fingerprints, strict=True):
        assert f"{host['name']}: recorded {fingerprint}" in trusted.stdout
        assert known_hosts.recorded(_known_hosts(project), host["address"]) == [host["host_key"]]
    assert _known_hosts(project).stat().st_mode & 0o777 == 0o600

    again = project.run("hosts", "trust", "fleet")  # nothing new: no question
    assert again.stdout.count("(already trusted)") == 2
    assert "recorded" not in again.stdout
    report = json.loads(project.run("hosts", "trust", "fleet", "--json").stdout)
    assert [(h["name"], h["status"], h["fingerprint"]) for h in report["hosts"]] == [
        (h["name"], "trusted", h["fingerprint"]) for h in hosts.hosts
    ]


def test_a_changed_key_is_shown_with_both_fingerprints_and_needs_a_yes(
    hosts: Inventory, tmp_path: Path
) -> None:
    project = _project(tmp_path, hosts, "changed")
    first, second = hosts.hosts
    # host1's address has host2's key on record: as if host1 had been reinstalled.
    known_hosts.record(_known_hosts(project), first["address"], second["host_key"])
    known_hosts.record(_known_hosts(project), second["address"], second["host_key"])
    before = _known_hosts(project).read_text()

    refused = project.run("hosts", "trust", "fleet", check=False)
    assert refused.returncode == 1
    assert (
        f"host1 ({first['user']}@{first['address']}:22): host key CHANGED: recorded "
        f"{second['fingerprint']}, now offers {first['fingerprint']}"
    ) in refused.stdout
    assert "(CHANGED: host1)" in refused.stderr
    assert _known_hosts(project).read_text() == before

    project.run("hosts", "trust", "fleet", "--yes")
    assert known_hosts.recorded(_known_hosts(project), first["address"]) == [first["host_key"]]


def test_setup_prepares_each_host_once_and_supervisord_runs_as_its_user(
    hosts: Inventory, tmp_path: Path
) -> None:
    project = _project(tmp_path, hosts, "setmeup")
    untrusted = project.run("setup", "fleet", check=False)
    assert untrusted.returncode == 1
    assert "its SSH host key is not known" in untrusted.stdout
    assert "conveyor hosts trust" in untrusted.stdout

    project.run("hosts", "trust", "fleet", "--yes")
    first = project.run("setup", "fleet")
    layout = RemoteLayout("setmeup")
    for host in hosts.hosts:
        prefix = f"{host['name']} ({host['user']}@{host['address']}:22): "
        assert f"{prefix}installed supervisor " in first.stdout
        assert f"{prefix}wrote {layout.supervisor_conf}" in first.stdout
        assert f"{prefix}started supervisord (pid " in first.stdout

    second = project.run("setup", "fleet")
    assert second.stdout.count("already set up, nothing to do") == 2
    assert "started" not in second.stdout

    for index, host in enumerate(hosts.hosts):
        status, _ = _remote(hosts, project, index, layout.supervisorctl("status"))
        assert status == 0  # supervisorctl reaches this project's supervisord
        _, pid = _remote(hosts, project, index, layout.supervisorctl("pid"))
        _, owner = _remote(hosts, project, index, ["ps", "-o", "user=", "-p", pid.strip()])
        assert owner.strip() == host["user"]
        _, modes = _remote(
            hosts,
            project,
            index,
            ["stat", "-c", "%a", str(layout.home), str(layout.run_dir), str(layout.lib)],
        )
        assert modes.split() == ["700", "700", "700"]
        status, tests = _remote(hosts, project, index, ["ls", str(layout.lib / "supervisor")])
        assert "supervisord.py" in tests.split()
        assert "tests" not in tests.split()  # shipped without its tests

    # host2 "rebooted": its supervisord is gone; setup starts it again and does nothing else.
    _, pid = _remote(hosts, project, 1, layout.supervisorctl("pid"))
    _remote(hosts, project, 1, ["kill", "-KILL", pid.strip()])
    deadline = time.monotonic() + 10
    while _remote(hosts, project, 1, layout.supervisorctl("pid"))[1].strip() == pid.strip():
        assert time.monotonic() < deadline, "supervisord survived SIGKILL"
    third = project.run("setup", "fleet")
    one, two = (f"{h['user']}@{h['address']}:22" for h in hosts.hosts[:2])
    assert f"host1 ({one}): already set up, nothing to do" in third.stdout
    assert f"host2 ({two}): started supervisord (pid " in third.stdout
    assert len(third.stdout.splitlines()) == 2


def test_hosts_checks_every_host_and_names_an_unreachable_one(
    hosts: Inventory, tmp_path: Path
) -> None:
    project = _project(tmp_path, hosts, "checkme")
    project.run("hosts", "trust", "fleet", "--yes")

    before_setup = project.run("hosts", "fleet", "--json", check=False)
    assert before_setup.returncode == 1
    report = json.loads(before_setup.stdout)
    assert [h["supervisord"] for h in report["hosts"]] == ["not set up", "not set up"]
    assert "run `conveyor setup ENV`" in report["hosts"][0]["problems"][0]

    project.run("setup", "fleet")
    healthy = json.loads(project.run("hosts", "fleet", "--json").stdout)
    assert healthy["ok"] is True
    for host, found in zip(hosts.hosts, healthy["hosts"], strict=True):
        assert found["name"] == host["name"]
        assert found["reachable"] is True
        assert found["host_key"] == "trusted"
        assert found["fingerprint"] == host["fingerprint"]
        assert found["supervisord"] == "up"
        assert found["disk_free_bytes"] > 0
        assert abs(found["clock_skew_seconds"]) < 1.0  # the hosts share this machine's clock
        assert found["problems"] == []

    sshd = _stop_sshd(hosts, 1)
    try:
        lost = project.run("hosts", "fleet", "--json", check=False)
        assert lost.returncode == 1
        report = json.loads(lost.stdout)
        assert report["ok"] is False
        fine, gone = report["hosts"]
        assert (fine["name"], fine["ok"], fine["supervisord"]) == ("host1", True, "up")
        assert (gone["name"], gone["ok"], gone["reachable"]) == ("host2", False, False)
        assert gone["problems"][0].startswith("unreachable: ")
        assert "host2" in lost.stderr

        text = project.run("hosts", "fleet", check=False)
        assert text.returncode == 1
        assert (
            f"host2 ({hosts.hosts[1]['user']}@{hosts.hosts[1]['address']}:22): PROBLEM: unreachable: "
            in (text.stdout)
        )
        assert "Traceback" not in text.stderr
    finally:
        sshd()


def _stop_sshd(hosts: Inventory, index: int) -> Callable[[], None]:
    """Kill test host `index`'s sshd; returns what starts it again."""
    name = hosts.hosts[index]["name"]
    directory = hosts.path.parent / name
    pid = int((directory / "sshd.pid").read_text())
    os.kill(pid, signal.SIGKILL)

    def restart() -> None:
        config = directory / "sshd_config"
        netns = ["ip", "netns", "exec", f"{namespace_prefix()}{name}"]
        subprocess.run([*netns, "/usr/sbin/sshd", "-f", str(config)], check=True)

    return restart
