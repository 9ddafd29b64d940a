"""Faults of the state store: a full disk, a damaged or emptied state database.

Real processes throughout: the shop deployed by the CLI under supervisord and
Caddy, its Conveyor home on a real 30 MiB filesystem (tmpfs) that is filled up
while a deploy runs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_shop import assert_serving, build, change_api, status
from tests.support.project import Project, make_project

pytestmark = pytest.mark.slow

EXIT_STATE = 4  # the documented exit code of a damaged or missing state database


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 30 MiB filesystem (tmpfs), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def shop_on_small_disk(tmp_path: Path, small_disk: Path) -> Iterator[Project]:
    project = make_project(tmp_path)
    project.home = small_disk / "home"
    project.env["CONVEYOR_HOME"] = str(project.home)
    try:
        yield project
    finally:
        project.shutdown()


def fill(directory: Path) -> Path:
    """Write a file into `directory` until its filesystem has no byte left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, bytes(chunk))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert shutil.disk_usage(directory).free == 0
    return filler


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def test_disk_fills_up_during_a_deploy(shop_on_small_disk: Project, tmp_path: Path) -> None:
    shop = shop_on_small_disk
    shop.run("deploy", "staging", "--build")
    change_api(shop, "v2")
    v2 = build(shop)["api"]
    plan = shop.json("deploy", "staging", "--dry-run")
    assert isinstance(plan, dict)
    last = len(plan["steps"])

    # Every step of the deploy has run when the disk fills up (another program's data).
    go_on = tmp_path / "go-on"
    deploying = shop.start(
        "deploy", "staging", env={"CONVEYOR_FAILPOINTS": f"executor.after_step:{last}=wait:{go_on}"}
    )
    assert deploying.stderr is not None
    for line in deploying.stderr:
        if line.startswith(f"failpoint executor.after_step:{last}: waiting"):
            break
    filler = fill(shop.home.parent)
    go_on.touch()
    out, err = deploying.communicate(timeout=120)
    result = subprocess.CompletedProcess(deploying.args, deploying.returncode, out, err)

    # The deploy is recorded as it ended, the lock is free, and the user is told.
    no_traceback(result)
    assert result.returncode == 0, err
    assert "disk" in err and str(shop.home) in err and "conveyor prune" in err, err
    assert_serving(shop, v2)
    history = shop.json("history", "staging")
    assert isinstance(history, list)
    assert history[0]["status"] == "succeeded"
    assert status(shop)["unfinished"] is None
    assert "not locked" in shop.run("lock", "status", "staging").stdout

    # With the disk still full, the next build and deploy refuse cleanly, naming the
    # place and what to prune; nothing is left locked or running.
    change_api(shop, "v3")
    for command in (("build",), ("deploy", "staging", "--build")):
        refused = shop.run(*command, check=False)
        no_traceback(refused)
        assert refused.returncode == 1, refused.stderr
        assert "free" in refused.stderr and str(shop.home) in refused.stderr, refused.stderr
        assert "conveyor prune" in refused.stderr, refused.stderr
    assert "not locked" in shop.run("lock", "status", "staging").stdout
    assert status(shop)["unfinished"] is None
    assert_serving(shop, v2)

    # Space freed: deploying works again.
    filler.unlink()
    shop.run("deploy", "staging", "--build")
    v3 = shop.json("history", "staging")
    assert isinstance(v3, list) and v3[0]["status"] == "succeeded"


def test_build_that_fills_the_disk_is_a_clear_error(shop_on_small_disk: Project) -> None:
    shop = shop_on_small_disk
    shop.run("deploy", "staging", "--build")
    # The build writes more than the disk holds: the estimate cannot know, ENOSPC says it.
    shop.configure_service("api", build=[["dd", "if=/dev/zero", "of=big", "bs=1M", "count=40"]])
    refused = shop.run("build", check=False)
    no_traceback(refused)
    assert refused.returncode == 1, refused.stderr
    assert "hint: the disk is full" in refused.stderr, refused.stderr
    assert str(shop.home / "releases" / "api") in refused.stderr, refused.stderr
    assert "conveyor prune" in refused.stderr, refused.stderr
    assert shutil.disk_usage(shop.home).free > 20 << 20  # the half-built release is gone


def test_source_bigger_than_the_free_space(shop_on_small_disk: Project) -> None:
    shop = shop_on_small_disk
    shop.run("build")
    filler = fill(shop.home.parent)
    os.truncate(filler, filler.stat().st_size - (10 << 20))  # 10 MiB left
    (shop.root / "api" / "data.bin").write_bytes(os.urandom(12 << 20))
    shop.commit("a big file")
    refused = shop.run("build", check=False)
    no_traceback(refused)
    assert refused.returncode == 1, refused.stderr
    assert "the disk is full" in refused.stderr or "not enough free space" in refused.stderr
    assert str(shop.home / "releases" / "api") in refused.stderr, refused.stderr
    assert "conveyor prune" in refused.stderr, refused.stderr
    assert not list((shop.home / "releases" / "api").glob(".staging-*"))


def flip_bytes(path: Path, count: int = 200) -> None:
    """Invert `count` bytes spread over the file (past its 100-byte header)."""
    data = bytearray(path.read_bytes())
    step = max(1, (len(data) - 100) // count)
    for position in range(100, len(data), step):
        data[position] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[tuple[Project, str]]:
    shop = make_project(tmp_path)
    try:
        release = build(shop)["api"]
        shop.run("deploy", "staging")
        yield shop, release
    finally:
        shop.shutdown()


COMMANDS = (("status",), ("status", "staging"), ("history", "staging"), ("deploy", "staging"))


@pytest.mark.parametrize("damage", ["flipped bytes", "header", "empty", "missing"])
def test_damaged_state_is_detected_and_restored(deployed: tuple[Project, str], damage: str) -> None:
    shop, release = deployed
    state = shop.home / "state.db"
    if damage == "flipped bytes":
        flip_bytes(state)
    elif damage == "header":
        with state.open("r+b") as handle:
            handle.write(b"garbage!")
    elif damage == "empty":
        state.write_bytes(b"")
    else:
        state.unlink()
        for suffix in ("-wal", "-shm"):
            state.with_name(state.name + suffix).unlink(missing_ok=True)

    for command in COMMANDS:
        result = shop.run(*command, check=False)
        no_traceback(result)
        assert result.returncode == EXIT_STATE, (command, result.stdout, result.stderr)
        assert str(state) in result.stderr, result.stderr
        assert "conveyor state restore" in result.stderr, result.stderr
    checked = shop.run("state", "check", check=False)
    assert checked.returncode == EXIT_STATE, checked.stderr

    restored = shop.run("state", "restore", "--yes")
    assert "restored" in restored.stdout, restored.stdout
    assert shop.run("state", "check").returncode == 0
    assert_serving(shop, release)
    history = shop.json("history", "staging")
    assert isinstance(history, list) and history[0]["status"] == "succeeded"
    assert (state.stat().st_mode & 0o777) == 0o600
    # Nothing lost: what was there before the restore is kept beside it (unless missing).
    kept = list(shop.home.glob("state.db.damaged-*"))
    assert len(kept) == (0 if damage == "missing" else 1)


def test_last_good_copy_is_kept_after_each_deployment(deployed: tuple[Project, str]) -> None:
    shop, _ = deployed
    copy = shop.home / "state.db.last-good"
    assert (copy.stat().st_mode & 0o777) == 0o600
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM deployments").fetchone()
    assert count == 1
    change_api(shop, "v2")
    shop.run("deploy", "staging", "--build")
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM deployments").fetchone()
    assert count == 2


def test_restore_from_a_named_copy(deployed: tuple[Project, str], tmp_path: Path) -> None:
    shop, release = deployed
    saved = tmp_path / "saved.db"
    shutil.copy(shop.home / "state.db.last-good", saved)
    (shop.home / "state.db").write_bytes(b"")
    (shop.home / "state.db.last-good").unlink()
    refused = shop.run("status", check=False)
    assert refused.returncode == EXIT_STATE
    assert "--from" in refused.stderr
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("hello\n")
    bad = shop.run("state", "restore", "--from", str(not_a_db), "--yes", check=False)
    no_traceback(bad)
    assert bad.returncode == EXIT_STATE and str(not_a_db) in bad.stderr
    shop.run("state", "restore", "--from", str(saved), "--yes")
    assert_serving(shop, release)
