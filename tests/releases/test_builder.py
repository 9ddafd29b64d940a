"""Releases: snapshots of git HEAD (or the working tree), sealed, verified, reused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.errors import BuildError, ReleaseIntegrityError
from conveyor.paths import Paths
from conveyor.releases.builder import MANIFEST, build_service, verify_release
from conveyor.store import open_store
from tests.support.project import git

CONFIG = """
project: demo
services:
  app:
    source: app
    include: [extra.txt]
    build:
      - sh -c 'echo built-$CONVEYOR_RELEASE > stamp.txt'
    run: [python3, app.py]
environments:
  dev:
    listen: 127.0.0.1:18111
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    (root / "app").mkdir(parents=True)
    (root / "conveyor.yml").write_text(CONFIG)
    (root / "app" / "app.py").write_text("print('v1')\n")
    (root / "app" / "run.sh").write_text("#!/bin/sh\n")
    (root / "app" / "run.sh").chmod(0o755)
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.email=a@b.c", "-c", "user.name=A", "add", "-A")
    git(root, "-c", "user.email=a@b.c", "-c", "user.name=A", "commit", "-q", "-m", "v1")
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    return root


def build(root: Path, dirty: bool = False):  # type: ignore[no-untyped-def]
    loaded = load_config(root / "conveyor.yml")
    paths = Paths.for_project(root).ensure()
    store = open_store(f"sqlite:///{paths.state_db}")
    return build_service(loaded, paths, store, "app", user="tester", dirty=dirty), store, paths


def test_build_snapshots_head_runs_build_and_seals(project: Path) -> None:
    (project / "app" / "app.py").write_text("print('uncommitted')\n")
    (project / "app" / "new.py").write_text("x = 1\n")
    result, store, _ = build(project)
    release = result.release
    tree = Path(release.path)
    assert (tree / "app.py").read_text() == "print('v1')\n"
    assert not (tree / "new.py").exists()
    assert (tree / "stamp.txt").read_text().strip() == f"built-{release.id}"
    assert os.access(tree / "run.sh", os.X_OK)
    manifest = json.loads((tree / MANIFEST).read_text())
    assert manifest["service"] == "app" and manifest["release"] == release.id
    assert manifest["git_commit"] == release.git_commit and len(release.git_commit or "") == 40
    assert manifest["digest"] == f"sha256:{release.digest}"
    assert manifest["built_by"] == "tester"
    assert Path(manifest["build_log"]).read_text().startswith("$ ")
    for path in [tree, *tree.rglob("*")]:
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
    assert store.get_release("app", release.id) == release


def test_dirty_build_includes_uncommitted_changes(project: Path) -> None:
    (project / "app" / "app.py").write_text("print('uncommitted')\n")
    (project / "app" / "new.py").write_text("x = 1\n")
    result, _, _ = build(project, dirty=True)
    tree = Path(result.release.path)
    assert (tree / "app.py").read_text() == "print('uncommitted')\n"
    assert (tree / "new.py").exists()
    assert result.release.manifest["dirty"] is True


def test_unchanged_source_reuses_the_release(project: Path) -> None:
    first, _, _ = build(project)
    again, _, _ = build(project)
    assert again.reused and again.release.id == first.release.id
    (project / "app" / "app.py").write_text("print('v2')\n")
    git(project, "-c", "user.email=a@b.c", "-c", "user.name=A", "commit", "-qam", "v2")
    changed, _, _ = build(project)
    assert not changed.reused and changed.release.id != first.release.id


def test_included_file_is_carried_when_committed(project: Path) -> None:
    (project / "extra.txt").write_text("faults\n")
    git(project, "-c", "user.email=a@b.c", "-c", "user.name=A", "add", "-A")
    git(project, "-c", "user.email=a@b.c", "-c", "user.name=A", "commit", "-qm", "extra")
    result, _, _ = build(project)
    assert (Path(result.release.path) / "extra.txt").read_text() == "faults\n"


def test_modified_release_is_refused(project: Path) -> None:
    result, store, paths = build(project)
    verify_release(store, paths, "app", result.release.id)
    target = Path(result.release.path) / "app.py"
    target.chmod(0o644)
    target.write_text("print('tampered')\n")
    with pytest.raises(ReleaseIntegrityError, match="modified after it was built"):
        verify_release(store, paths, "app", result.release.id)


def test_failing_build_command_shows_the_log_tail(project: Path) -> None:
    (project / "conveyor.yml").write_text(
        CONFIG.replace(
            "sh -c 'echo built-$CONVEYOR_RELEASE > stamp.txt'",
            "sh -c 'echo compiling; echo boom >&2; exit 3'",
        )
    )
    with pytest.raises(BuildError) as caught:
        build(project)
    assert "exited with 3" in caught.value.message
    assert "boom" in caught.value.message
    assert caught.value.hint and "build log" in caught.value.hint
    leftovers = list((Path(os.environ["CONVEYOR_HOME"]) / "releases" / "app").iterdir())
    assert leftovers == []
