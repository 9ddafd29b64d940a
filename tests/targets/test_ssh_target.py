"""The SSH target on two real sshd test hosts (scripts/testhosts): the conformance suite
(conformance.py), and what only a remote target does: shipping releases (once, only
what changed, checked on the host), program files holding secrets, errors naming the host.

The project's supervisord on each host is started by `ensure_supervisord` (what
`conveyor setup` does) and shut down, with the project's directory, afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Coroutine, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import pytest

from conveyor.errors import TargetError
from conveyor.paths import Paths
from conveyor.releases import depstore, seal
from conveyor.ssh.connection import Connections
from conveyor.ssh.layout import RemoteLayout
from conveyor.targets.base import RUNNING
from conveyor.targets.ssh import SshTarget, ensure_supervisord
from tests.support.testhosts import Inventory, hosts_up
from tests.targets.conformance import *  # noqa: F403  (the tests and their fixtures)
from tests.targets.conformance import APP, PORTS, get, make_spec, wait_until

# It drives real sshd test hosts: end to end, out of the fast loop.
pytestmark = [pytest.mark.slow, pytest.mark.e2e]

T = TypeVar("T")


COMMIT_TIME = 1_767_225_600  # the same for every release: rsync hard-links equal files


def build_release(paths: Paths, release_id: str, files: dict[str, str]) -> tuple[Path, str]:
    """A sealed release of service `web` in the deployer's home, as `conveyor build` leaves
    one: its file list, manifest and read-only tree; returns its path and digest."""
    root = paths.release_dir("web", release_id)
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "bin").mkdir(exist_ok=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "link").symlink_to("app.py")
    for path in root.rglob("*"):  # a build gives each file its commit's time
        os.utime(path, (COMMIT_TIME, COMMIT_TIME), follow_symlinks=False)
    sealed = seal.record(root, ["tmp"])
    (root / seal.MANIFEST).write_text(json.dumps({"writable": ["tmp"]}))
    seal.make_read_only(root, ["tmp"])
    return root, sealed.digest


class SshHarness:
    """Two hosts, one project directory on each, a release shipped to the first."""

    def __init__(self, inventory: Inventory, home: Path) -> None:
        self.inventory = inventory
        self.loop = asyncio.new_event_loop()
        self.paths = Paths(home).ensure()
        self.connections = Connections(inventory.known_hosts)
        self.specs = [inventory.spec(0), inventory.spec(1)]
        self.layout = RemoteLayout("conformance")
        self.target = SshTarget(self.connections, self.specs, self.layout, self.paths)
        self.host = self.specs[0].name
        for spec in self.specs:
            self.run(ensure_supervisord(self.connections, spec, self.layout))
        self.release_dir, digest = build_release(self.paths, "r1", {"app.py": APP})
        self.run(self.target.ship(self.host, self.release_dir, digest))

    def log_path(self, name: str) -> Path:
        return self.paths.instance_logs / f"{name}.log"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def sh(self, index: int, script: str, *args: str) -> str:
        """Run a shell script on a host; its stdout."""
        done = self.run(
            self.connections.run(self.specs[index], ["sh", "-c", script, "sh", *args], timeout=30)
        )
        assert done.exit_status == 0, done.stderr
        return done.stdout

    def remote_home(self, index: int) -> PurePosixPath:
        return PurePosixPath(self.sh(index, "pwd").strip()) / self.layout.home

    def close(self) -> None:
        for index, spec in enumerate(self.specs):
            self.run(self.connections.run(spec, self.layout.supervisorctl("shutdown"), timeout=30))
            self.sh(index, 'chmod -R u+w "$1"; rm -rf "$1"', str(self.layout.home))
        self.run(self.connections.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHarness]:
    with hosts_up(2, tmp_path_factory.mktemp("testhosts") / "hosts") as inventory:
        made = SshHarness(inventory, tmp_path_factory.mktemp("deployer") / "home")
        try:
            yield made
        finally:
            made.close()


# -- shipping -------------------------------------------------------------------------


def test_a_release_arrives_sealed_and_is_not_sent_again(harness: SshHarness) -> None:
    final = harness.remote_home(0) / "releases" / "web" / "r1"
    listing = harness.sh(
        0, 'cd "$1" && stat -c "%a %n" . app.py bin/tool && readlink link', str(final)
    )
    assert listing.split("\n")[:4] == ["500 .", "444 app.py", "555 bin/tool", "app.py"]
    inode = harness.sh(0, 'stat -c %i "$1/app.py"', str(final))
    digest = seal.check(harness.release_dir, ["tmp"]).digest
    harness.run(harness.target.ship(harness.host, harness.release_dir, digest))
    assert harness.sh(0, 'stat -c %i "$1/app.py"', str(final)) == inode  # not sent again


def test_a_new_release_sends_only_what_changed(harness: SshHarness) -> None:
    big = "x" * 2_000_000
    first, first_digest = build_release(harness.paths, "big1", {"app.py": APP, "big.txt": big})
    second, second_digest = build_release(
        harness.paths, "big2", {"app.py": APP + "\n# changed\n", "big.txt": big}
    )
    host = harness.specs[1].name
    harness.run(harness.target.ship(host, first, first_digest))
    harness.run(harness.target.ship(host, second, second_digest))
    releases = harness.remote_home(1) / "releases" / "web"
    inodes = harness.sh(
        1,
        'stat -c %i "$1/big1/big.txt" "$1/big2/big.txt" "$1/big1/app.py" "$1/big2/app.py"',
        str(releases),
    ).split()
    assert inodes[0] == inodes[1]  # the unchanged file was linked, not sent
    assert inodes[2] != inodes[3]
    assert harness.sh(1, 'cat "$1/big2/app.py"', str(releases)).endswith("# changed\n")


def test_a_same_size_change_with_the_same_mtime_is_sent(harness: SshHarness) -> None:
    # A build gives files their commit's time in whole seconds: two releases committed in
    # the same second can differ in a file of the same size and the same mtime.
    files = {"app.py": APP, "VERSION": "v1\n", "data.txt": "x" * 10_000}
    first, first_digest = build_release(harness.paths, "same1", files)
    second, second_digest = build_release(harness.paths, "same2", {**files, "VERSION": "v2\n"})
    for root in (first, second):
        for path in root.rglob("*"):
            os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    host = harness.specs[1].name
    harness.run(harness.target.ship(host, first, first_digest))
    harness.run(harness.target.ship(host, second, second_digest))
    releases = harness.remote_home(1) / "releases" / "web"
    assert harness.sh(1, 'cat "$1/same2/VERSION"', str(releases)) == "v2\n"
    inodes = harness.sh(
        1, 'stat -c %i "$1/same1/data.txt" "$1/same2/data.txt"', str(releases)
    ).split()
    assert inodes[0] == inodes[1]  # what did not change is still linked, not sent


def test_a_release_that_arrives_different_is_removed_and_named(harness: SshHarness) -> None:
    root, digest = build_release(harness.paths, "bad1", {"app.py": APP, "conf.txt": "a"})
    (root / "conf.txt").chmod(0o644)
    (root / "conf.txt").write_text("tampered after the build")
    with pytest.raises(TargetError) as caught:
        harness.run(harness.target.ship(harness.host, root, digest))
    message = caught.value.message
    assert message.startswith(f"host {harness.specs[0].describe()}: release bad1 of web")
    assert "modified: conf.txt" in message
    left = harness.sh(0, 'ls -A "$1"', str(harness.remote_home(0) / "releases" / "web"))
    assert "bad1" not in left  # neither the release nor its staging directory


def test_a_host_behind_a_jump_host_gets_a_tarball(harness: SshHarness) -> None:
    behind = harness.inventory.spec(1, jump=harness.inventory.spec(0))
    target = SshTarget(harness.connections, [behind], harness.layout, harness.paths)
    root, digest = build_release(harness.paths, "tar1", {"app.py": APP})
    harness.run(target.ship(behind.name, root, digest))
    final = harness.remote_home(1) / "releases" / "web" / "tar1"
    assert harness.sh(1, 'cd "$1" && stat -c "%a" bin/tool && cat app.py', str(final)) == (
        "555\n" + APP
    )


def build_venv_release(paths: Paths, release_id: str, module: str) -> tuple[Path, str]:
    """A sealed release whose `.venv` is a link into the dependency store, as a build that
    reuses its virtualenv leaves it (`conveyor.releases.depstore`)."""
    root = paths.release_dir("web", release_id)
    package = root / ".venv" / "lib" / "python3.11" / "site-packages" / "pkg"
    package.mkdir(parents=True)
    (root / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (package / "__init__.py").write_text(module)
    (root / ".venv" / "lib64").symlink_to("lib")
    (root / "app.py").write_text(APP)
    tree = depstore.adopt(paths, f"key-{release_id}", root, [".venv"])
    sealed = seal.record(root, [], follow=[".venv"], stored=tree)
    manifest = {"writable": [], "dependencies": {"shared": [".venv"]}}
    (root / seal.MANIFEST).write_text(json.dumps(manifest))
    seal.make_read_only(root, [])
    return root, sealed.digest


def test_a_virtualenv_in_the_store_arrives_as_real_directories(harness: SshHarness) -> None:
    """By rsync (the host has an earlier release) and by tarball (behind a jump host): the
    host's copy stands alone, and its digest, checked there, is the one built."""
    host = harness.specs[1].name
    first, first_digest = build_venv_release(harness.paths, "venv1", "A = 1\n")
    second, second_digest = build_venv_release(harness.paths, "venv2", "A = 2\n")
    assert (second / ".venv").is_symlink()
    harness.run(harness.target.ship(host, first, first_digest))  # rsync: r-releases before
    behind = harness.inventory.spec(1, jump=harness.inventory.spec(0))
    target = SshTarget(harness.connections, [behind], harness.layout, harness.paths)
    harness.run(target.ship(behind.name, second, second_digest))  # a tarball
    releases = harness.remote_home(1) / "releases" / "web"
    for name, value in (("venv1", "A = 1"), ("venv2", "A = 2")):
        shown = harness.sh(
            1,
            'cd "$1/$2/.venv" && stat -c %F . && readlink lib64 && '
            "cat lib/python3.11/site-packages/pkg/__init__.py",
            str(releases),
            name,
        )
        assert shown.split("\n")[:3] == ["directory", "lib", value]


# -- programs --------------------------------------------------------------------------


def test_secrets_stay_in_a_0600_program_file_never_on_a_command_line(
    harness: SshHarness,
) -> None:
    secret = "s3cr3t-value-42"
    endpoint = harness.run(harness.target.reserve(harness.host, set(), PORTS))
    spec = make_spec(
        harness, "ssh-secret-1", endpoint.port, {"HOST": endpoint.listen, "TOKEN": secret}
    )
    harness.run(harness.target.start(spec))
    try:
        wait_until(lambda: get(endpoint.address))
        conf = harness.remote_home(0) / "supervisor" / "programs" / "ssh-secret-1.conf"
        assert harness.sh(0, 'stat -c %a "$1"', str(conf)).strip() == "600"
        assert secret in harness.sh(0, 'cat "$1"', str(conf))
        assert secret not in harness.sh(0, "ps -eo args")
        log = harness.remote_home(0) / "logs" / "instances" / "ssh-secret-1.log"
        assert harness.sh(0, 'stat -c %a "$1"', str(log)).strip() == "600"
    finally:
        harness.run(harness.target.stop(spec.name, 5))


def test_instances_listen_on_the_hosts_address_reachable_from_the_deployer(
    harness: SshHarness,
) -> None:
    endpoint = harness.run(harness.target.reserve(harness.specs[1].name, set(), PORTS))
    assert endpoint.listen == harness.specs[1].address
    root, digest = build_release(harness.paths, "r2", {"app.py": APP})
    harness.run(harness.target.ship(harness.specs[1].name, root, digest))
    spec = make_spec(harness, "ssh-second-1", endpoint.port, {"HOST": endpoint.listen})
    spec = type(spec)(
        **{**spec.__dict__, "host": harness.specs[1].name, "release_dir": root, "release_id": "r2"}
    )
    harness.run(harness.target.start(spec))
    try:
        answer = wait_until(lambda: get(endpoint.address))
        assert answer["cwd"].startswith(str(harness.remote_home(1)))
        statuses = {s.name: s for s in harness.run(harness.target.list())}
        assert statuses["ssh-second-1"].state in (RUNNING, "starting")
    finally:
        harness.run(harness.target.stop(spec.name, 5))


def test_an_instance_of_a_release_not_on_the_host_is_refused_naming_it(
    harness: SshHarness,
) -> None:
    spec = make_spec(harness, "ssh-missing-1", 20500)
    spec = type(spec)(
        **{
            **spec.__dict__,
            "release_id": "nope",
            "release_dir": harness.paths.release_dir("web", "nope"),
        }
    )
    with pytest.raises(
        TargetError,
        match=r"^host host1 \(.*\): instance ssh-missing-1: "
        r"release nope of web is not on the host",
    ):
        harness.run(harness.target.start(spec))


def test_an_unknown_host_is_an_error_naming_the_hosts(harness: SshHarness) -> None:
    with pytest.raises(TargetError, match=r'host "web9" is not one of .*\(host1, host2\)'):
        harness.run(harness.target.reserve("web9", set(), PORTS))


def test_program_files_are_private(harness: SshHarness) -> None:
    programs = harness.remote_home(0) / "supervisor" / "programs"
    mode = harness.sh(0, 'stat -c %a "$1"', str(programs)).strip()
    assert stat.S_IMODE(int(mode, 8)) & 0o077 == 0
    assert os.sep == "/"
