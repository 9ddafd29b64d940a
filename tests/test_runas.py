"""Who the app runs as, and what that user must be able to reach (pure checks on real
directories; the switch itself is in tests/e2e/test_unprivileged.py)."""

from __future__ import annotations

import doctest
import os
import pwd
from pathlib import Path

import pytest

import conveyor.engine.release_env
import conveyor.tarball
from conveyor.engine.release_env import command_program
from conveyor.errors import TargetError
from conveyor.paths import Paths, make_dir
from conveyor.runas import RunUser, blocked_at, require_runnable, run_user, search_path_for
from tests.support.project import passable

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root switches user")


@pytest.fixture
def nobody(tmp_path: Path) -> RunUser:
    passable(tmp_path)  # the test's own directory is open to it; what it makes may not be
    entry = pwd.getpwnam("nobody")
    return RunUser("nobody", entry.pw_uid, entry.pw_gid, ())


@pytest.mark.parametrize("module", [conveyor.engine.release_env, conveyor.tarball])
def test_doctests(module: object) -> None:
    failures, _ = doctest.testmod(module)  # type: ignore[arg-type]
    assert failures == 0


def test_a_closed_directory_on_the_way_is_named(tmp_path: Path, nobody: RunUser) -> None:
    (tmp_path / "open" / "closed" / "release").mkdir(parents=True)
    (tmp_path / "open" / "closed").chmod(0o700)
    assert blocked_at(tmp_path / "open" / "closed" / "release", nobody) == (
        tmp_path / "open" / "closed"
    )
    assert blocked_at(tmp_path / "open", nobody) is None
    # What does not exist yet is made for the user: nothing blocks it so far.
    assert blocked_at(tmp_path / "open" / "later" / "data", nobody) is None


def test_group_and_owner_bits_count_for_their_user(tmp_path: Path, nobody: RunUser) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    assert blocked_at(mine, nobody) == mine
    member = RunUser("member", 4242, os.getgid(), ())
    mine.chmod(0o710)
    assert blocked_at(mine, member) is None  # the group may pass
    assert blocked_at(mine, nobody) == mine


def test_an_interpreter_behind_a_closed_directory_is_named_hop_by_hop(
    tmp_path: Path, nobody: RunUser
) -> None:
    private = tmp_path / "pyenv"
    (private / "bin").mkdir(parents=True)
    (private / "bin" / "python3").symlink_to("/usr/bin/python3")
    private.chmod(0o700)
    venv = tmp_path / "release" / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(private / "bin" / "python3")
    with pytest.raises(TargetError) as caught:
        require_runnable(venv / "python", nobody, "the release's")
    assert f"({private}/bin/python3)" in caught.value.message
    assert f"may not enter {private} (mode 700)" in caught.value.message
    require_runnable(Path("/usr/bin/python3"), nobody, "the command's program")


def test_the_search_path_drops_what_the_user_cannot_enter(tmp_path: Path, nobody: RunUser) -> None:
    closed = tmp_path / "shims"
    closed.mkdir(mode=0o700)
    path = os.pathsep.join([str(closed), "/usr/local/bin", "/usr/bin"])
    assert search_path_for(path, nobody) == "/usr/local/bin:/usr/bin"


def test_commands_name_their_program() -> None:
    assert command_program(["node", "server.js"]) == "node"
    assert command_program(["/bin/sh", "-c", "PORT=1 exec python3 app.py"]) == "python3"
    assert command_program(["/bin/sh", "-c", "cd web && node server.js"]) == "cd"
    assert command_program(["/bin/sh", "-c", "'unterminated"]) is None


def test_not_root_runs_as_itself_unless_it_names_another_user() -> None:
    from conveyor.runas import _run_user

    me = pwd.getpwuid(os.getuid()).pw_name
    assert _run_user(None, 1000) is None
    assert _run_user(me, os.geteuid()) is None
    with pytest.raises(TargetError, match="needs Conveyor to run as root"):
        _run_user("nobody", 12345)
    with pytest.raises(TargetError, match="does not exist on this machine"):
        run_user("no-such-user-x")


@root_only
def test_root_runs_the_app_as_the_conveyor_user() -> None:
    user = run_user(None)
    assert user is not None and user.name == "conveyor"
    assert pwd.getpwnam("conveyor").pw_shell == "/usr/sbin/nologin"
    assert run_user("root") is None  # run_as: root is allowed, and switches nothing


@root_only
def test_root_keeps_releases_and_data_out_of_its_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    paths = Paths.for_project(tmp_path)
    assert paths.home == tmp_path / ".conveyor"
    assert paths.releases.parent == Path("/var/lib/conveyor/releases")
    assert paths.data.parent == Path("/var/lib/conveyor/data")
    assert paths.releases.name == paths.data.name
    assert paths.releases.name.startswith(tmp_path.name + "-")


def test_made_directories_get_the_mode_on_the_way(tmp_path: Path) -> None:
    os.umask(old := os.umask(0o077))
    try:
        os.umask(0o077)
        make_dir(tmp_path / "a" / "b" / "c", 0o711)
    finally:
        os.umask(old)
    for directory in ("a", "a/b", "a/b/c"):
        assert (tmp_path / directory).stat().st_mode & 0o777 == 0o711
