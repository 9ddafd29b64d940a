"""Releases: snapshots of git HEAD (or the working tree), sealed, verified, reused."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.errors import BuildError, ReleaseIntegrityError
from conveyor.paths import Paths
from conveyor.releases.builder import MANIFEST, build_service, remove_release_dir, verify_release
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
    log = Path(manifest["build_log"]).read_text().splitlines()
    assert log[0].startswith(f"# app {release.id}: git HEAD {release.git_commit[:12]}")
    assert log[1].startswith("$ sh -c")
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


def commit_all(root: Path, message: str) -> None:
    git(root, "-c", "user.email=a@b.c", "-c", "user.name=A", "add", "-A")
    git(root, "-c", "user.email=a@b.c", "-c", "user.name=A", "commit", "-qm", message)


def set_service(root: Path, **settings: object) -> None:
    import yaml

    config = yaml.safe_load((root / "conveyor.yml").read_text())
    config["services"]["app"].update(settings)
    (root / "conveyor.yml").write_text(yaml.safe_dump(config, sort_keys=False))


VENV = {
    "paths": [".venv"],
    "files": ["requirements.txt"],
    "install": ["python3 -m venv .venv", ".venv/bin/pip install -q --no-index -r requirements.txt"],
}


def test_a_virtualenv_built_in_the_release_runs_from_it(project: Path) -> None:
    """Regression: the build ran in a temporary directory renamed afterwards, so every
    console script's shebang named a directory that no longer existed."""
    set_service(project, build=["python3 -m venv .venv"])
    commit_all(project, "venv")
    result, _, _ = build(project)
    tree = Path(result.release.path)
    # pip writes "#!PATH" (or a /bin/sh trampoline naming PATH when PATH is long); the
    # release's scripts run the python next to them instead, wherever the release is.
    script = (tree / ".venv" / "bin" / "pip").read_text()
    assert str(tree) not in script
    ran = subprocess.run([tree / ".venv" / "bin" / "pip", "--version"], capture_output=True)
    assert ran.returncode == 0 and str(tree) in ran.stdout.decode()


def test_unchanged_requirements_reuse_the_dependencies(project: Path) -> None:
    """The virtualenv is installed once: releases with the same requirements link the
    store's sealed copy (its directories too), which outlives the release that made it."""
    (project / "app" / "requirements.txt").write_text("# nothing yet\n")
    set_service(project, dependencies=VENV)
    commit_all(project, "deps")
    first, store, paths = build(project)
    one = Path(first.release.path)
    assert first.release.manifest["dependencies"]["reused_from"] is None

    (project / "app" / "app.py").write_text("print('v2')\n")
    commit_all(project, "v2")
    second, _, _ = build(project)
    two = Path(second.release.path)
    assert second.release.manifest["dependencies"]["reused_from"] == first.release.id
    assert "dependencies linked from" in Path(second.release.build_log or "").read_text()
    assert (one / ".venv").is_symlink() and (two / ".venv").is_symlink()
    assert (one / ".venv").resolve() == (two / ".venv").resolve()
    assert second.release.manifest["dependencies"]["shared"] == [".venv"]
    assert sum(1 for d in two.rglob("*") if d.is_dir() and not d.is_symlink()) < 5
    shared = next((two / ".venv" / "lib").rglob("pip/__init__.py"))
    twin = one / shared.relative_to(two)
    assert shared.stat().st_ino == twin.stat().st_ino  # one copy on disk
    # the scripts name no release, so deleting the old one breaks nothing
    script = (two / ".venv" / "bin" / "pip").read_text()
    assert str(two) not in script and str(one) not in script
    assert str(one) not in (two / ".venv" / "pyvenv.cfg").read_text()
    verify_release(store, paths, "app", first.release.id)
    verify_release(store, paths, "app", second.release.id)
    remove_release_dir(one)
    assert not (shared.stat().st_mode & stat.S_IWUSR)  # still sealed
    verify_release(store, paths, "app", second.release.id)
    ran = subprocess.run([two / ".venv" / "bin" / "pip", "--version"], capture_output=True)
    assert ran.returncode == 0, ran.stderr

    (project / "app" / "requirements.txt").write_text("# changed\n")
    commit_all(project, "new requirements")
    third, _, _ = build(project)
    assert third.release.manifest["dependencies"]["reused_from"] is None


def test_services_of_one_code_base_share_one_install(project: Path) -> None:
    """A web service and its workers (Django and Celery) built from the same source and
    requirements: the second service links the first one's dependencies."""
    import yaml

    (project / "app" / "requirements.txt").write_text("# nothing yet\n")
    set_service(project, dependencies=VENV)
    config = yaml.safe_load((project / "conveyor.yml").read_text())
    config["services"]["worker"] = {**config["services"]["app"], "run": ["python3", "w.py"]}
    config["services"]["other"] = {
        **config["services"]["app"],
        "env": {"X": "1"},  # another environment: another install
    }
    (project / "conveyor.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    commit_all(project, "a worker")
    first, store, paths = build(project)
    loaded = load_config(project / "conveyor.yml")
    worker = build_service(loaded, paths, store, "worker", user="tester", dirty=False)
    deps = worker.release.manifest["dependencies"]
    assert deps["reused_from"] == first.release.id and deps["reused_from_service"] == "app"
    one, two = Path(first.release.path), Path(worker.release.path)
    shared = next((two / ".venv" / "lib").rglob("pip/__init__.py"))
    assert shared.stat().st_ino == (one / shared.relative_to(two)).stat().st_ino
    verify_release(store, paths, "worker", worker.release.id)
    other = build_service(loaded, paths, store, "other", user="tester", dirty=False)
    assert other.release.manifest["dependencies"]["reused_from"] is None


def test_a_build_command_cannot_change_the_shared_dependencies(project: Path) -> None:
    """A reused virtualenv is the store's, shared with other releases: a `build:` command
    that replaces one of its files (even as root) fails with what to do instead, and the
    release that shares it stays intact."""
    (project / "app" / "requirements.txt").write_text("# nothing yet\n")
    set_service(project, dependencies=VENV)
    commit_all(project, "deps")
    first, store, paths = build(project)
    replace = (
        "f=$(ls .venv/lib/*/site-packages/pip/__init__.py) && cp $f $f.new && "
        "echo '# patched' >> $f.new && mv $f.new $f"
    )
    set_service(project, dependencies=VENV, build=[["sh", "-c", replace]])
    commit_all(project, "patch pip")
    with pytest.raises(BuildError) as caught:
        build(project)
    assert "services/app/dependencies/install" in (caught.value.hint or "")
    verify_release(store, paths, "app", first.release.id)
    venv_lib = Path(first.release.path) / ".venv" / "lib"
    assert "# patched" not in next(venv_lib.rglob("pip/__init__.py")).read_text()


def test_a_python_run_as_root_from_a_release_leaves_the_shared_virtualenv_alone(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Regression: root (whom the store's modes do not stop) ran a release's python with no
    PYTHONDONTWRITEBYTECODE and wrote the bytecode caches it missed into the virtualenv
    that every release with the same requirements shares: all of them failed their
    check. The store's modules are compiled when it takes them, into the tree even when
    Conveyor runs with a bytecode cache elsewhere (PYTHONPYCACHEPREFIX)."""
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "pycache"))
    (project / "app" / "requirements.txt").write_text("# nothing yet\n")
    module = [
        ".venv/bin/python",
        "-c",
        "import pathlib, site; "
        "pathlib.Path(site.getsitepackages()[0], 'installed_module.py').write_text('X = 1')",
    ]
    set_service(project, dependencies={**VENV, "install": [*VENV["install"], module]})
    commit_all(project, "deps")
    first, store, paths = build(project)
    (project / "app" / "app.py").write_text("print('v2')\n")
    commit_all(project, "v2")
    second, _, _ = build(project)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)}
    env.pop("PYTHONPYCACHEPREFIX")
    python = Path(second.release.path) / ".venv" / "bin" / "python"
    imported = subprocess.run(
        [python, "-c", "import installed_module"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr
    verify_release(store, paths, "app", first.release.id)
    verify_release(store, paths, "app", second.release.id)


def test_a_changed_stored_virtualenv_is_named_and_the_next_build_installs_it_again(
    project: Path,
) -> None:
    """Something wrote into the store (root ignores its modes): the release check says so
    and what to run, and `conveyor build` of the same source installs a fresh virtualenv
    instead of linking the changed one again."""
    (project / "app" / "requirements.txt").write_text("# nothing yet\n")
    set_service(project, dependencies=VENV)
    commit_all(project, "deps")
    first, store, paths = build(project)
    tree = (Path(first.release.path) / ".venv").resolve()
    tree.chmod(0o755)
    (tree / "stray.txt").write_text("written by root\n")
    with pytest.raises(ReleaseIntegrityError) as caught:
        verify_release(store, paths, "app", first.release.id)
    assert "added: .venv/stray.txt" in caught.value.message
    assert "`conveyor build` installs it again" in (caught.value.hint or "")

    second, _, _ = build(project)  # the same source
    assert second.release.id != first.release.id
    assert second.release.manifest["dependencies"]["reused_from"] is None
    fresh = (Path(second.release.path) / ".venv").resolve()
    assert fresh == tree and not (fresh / "stray.txt").exists()
    verify_release(store, paths, "app", second.release.id)
    (project / "app" / "app.py").write_text("print('v3')\n")
    commit_all(project, "v3")
    third, _, _ = build(project)  # links the fresh one
    assert third.release.manifest["dependencies"]["reused_from"] == second.release.id
    verify_release(store, paths, "app", third.release.id)


def test_where_the_store_cannot_be_protected_a_release_gets_hard_links_of_its_own(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root in a container without CAP_SYS_ADMIN (no read-only mount for build commands):
    the reused virtualenv is hard links in the release, and a build command that replaces
    one of its files changes that release alone, sealed as it wrote it."""
    from conveyor.releases import depstore

    (project / "app" / "requirements.txt").write_text("# nothing yet\n")
    set_service(project, dependencies=VENV)
    commit_all(project, "deps")
    first, store, paths = build(project)
    monkeypatch.setattr(depstore, "protectable", lambda: False)
    replace = (
        "f=$(ls .venv/lib/*/site-packages/pip/__init__.py) && cp $f $f.new && "
        "echo '# patched' >> $f.new && mv $f.new $f"
    )
    set_service(project, dependencies=VENV, build=[["sh", "-c", replace]])
    commit_all(project, "patch pip")
    second, _, _ = build(project)
    two = Path(second.release.path)
    assert not (two / ".venv").is_symlink()
    patched = next((two / ".venv" / "lib").rglob("pip/__init__.py"))
    assert "# patched" in patched.read_text()
    assert patched.stat().st_mode & 0o222 == 0  # sealed like the rest, though written late
    verify_release(store, paths, "app", second.release.id)
    verify_release(store, paths, "app", first.release.id)  # the store's copy is untouched
    assert "shareable" not in second.release.manifest["dependencies"]


def test_unchanged_files_are_shared_with_the_previous_release(project: Path) -> None:
    (project / "app" / "requirements.txt").write_text("# nothing yet\n")
    (project / "app" / "lib.py").write_text("X = 1\n")
    output = "seq 1 20000 > output.txt && echo $CONVEYOR_RELEASE > stamp.txt"
    set_service(project, dependencies=VENV, build=[["sh", "-c", output]])
    commit_all(project, "deps")
    first, store, paths = build(project)
    releases = [Path(first.release.path)]
    for n in (2, 3):
        (project / "app" / "app.py").write_text(f"print('v{n}')\n")
        commit_all(project, f"v{n}")
        releases.append(Path(build(project)[0].release.path))
    one, two, three = releases

    def same(a: Path, b: Path) -> bool:
        return a.stat().st_ino == b.stat().st_ino

    assert same(two / "output.txt", one / "output.txt")  # the build's unchanged output
    assert same(three / "output.txt", one / "output.txt")
    assert not same(two / "stamp.txt", one / "stamp.txt")  # it differs
    assert not same(two / "lib.py", one / "lib.py")  # .py: bytecode caches name its mtime
    # the list of the linked dependency files is written once and shared
    shared = "conveyor-files-shared.txt"
    assert same(three / shared, two / shared)
    assert ".venv/pyvenv.cfg" in (three / shared).read_text()  # the store's virtualenv
    for release in store.list_releases("app"):
        verify_release(store, paths, "app", release.id)
    remove_release_dir(one)
    remove_release_dir(two)
    assert (three / "output.txt").read_text().startswith("1\n2\n")
    last = store.list_releases("app")[0]
    verify_release(store, paths, "app", last.id)
    # the shared list still names every dependency file that changes
    tree = Path(last.path)
    victim = next((tree / ".venv" / "lib").rglob("pip/__init__.py"))
    tree.chmod(0o755)
    victim.parent.chmod(0o755)
    victim.unlink()
    with pytest.raises(ReleaseIntegrityError) as caught:
        verify_release(store, paths, "app", last.id)
    assert f"removed: {victim.relative_to(tree)}" in caught.value.message


def test_writable_directories_stay_out_of_the_seal(project: Path) -> None:
    set_service(project, writable=["cache"])
    commit_all(project, "writable")
    result, store, paths = build(project)
    tree = Path(result.release.path)
    (tree / "cache" / "page.html").write_text("rendered at run time\n")
    verify_release(store, paths, "app", result.release.id)


def test_a_modified_release_names_its_changed_files_and_is_rebuilt(project: Path) -> None:
    result, store, paths = build(project)
    tree = Path(result.release.path)
    (tree / "app.py").chmod(0o644)
    (tree / "app.py").write_text("print('tampered')\n")
    tree.chmod(0o755)
    (tree / "server.log").write_text("oops\n")
    with pytest.raises(ReleaseIntegrityError) as caught:
        verify_release(store, paths, "app", result.release.id)
    assert "modified: app.py" in caught.value.message
    assert "added: server.log" in caught.value.message
    assert "services/app/writable" in (caught.value.hint or "")
    again, _, _ = build(project)  # the hint's way out: the same source, a new release
    assert not again.reused and again.release.id != result.release.id
    verify_release(store, paths, "app", again.release.id)


def test_excluded_files_and_the_config_stay_out_and_config_edits_make_no_release(
    project: Path,
) -> None:
    (project / "conveyor.yml").write_text(
        CONFIG.replace("source: app", "source: .").replace(
            "include: [extra.txt]", "exclude: [docs/, '*.md']"
        )
    )
    (project / "docs").mkdir()
    (project / "docs" / "guide.txt").write_text("guide\n")
    (project / "README.md").write_text("readme\n")
    (project / "app" / "NOTES.md").write_text("notes\n")
    commit_all(project, "docs")
    first, _, _ = build(project)
    tree = Path(first.release.path)
    assert (tree / "app" / "app.py").exists()
    for left_out in ("docs", "README.md", "app/NOTES.md", "conveyor.yml"):
        assert not (tree / left_out).exists(), left_out
    (project / "conveyor.yml").write_text(
        (project / "conveyor.yml").read_text().replace("18111", "18112")
    )
    commit_all(project, "listen elsewhere")
    again, _, _ = build(project)
    assert again.reused and again.release.id == first.release.id


def test_the_service_env_reaches_the_build(project: Path) -> None:
    set_service(project, env={"GREETING": "hello"}, build=["sh -c 'echo $GREETING > greeting.txt'"])
    commit_all(project, "env")
    result, _, _ = build(project)
    assert (Path(result.release.path) / "greeting.txt").read_text() == "hello\n"


def test_releases_live_outside_the_project_tree(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: Next.js took the project's lock file as its workspace root because
    the release was built inside the project's .conveyor/."""
    monkeypatch.delenv("CONVEYOR_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    result, _, paths = build(project)
    tree = Path(result.release.path)
    assert paths.home == project / ".conveyor"
    assert project not in tree.parents
    assert tree.is_relative_to(tmp_path / "data" / "conveyor" / "releases")


def test_concurrent_builds_of_one_source_give_one_release(project: Path) -> None:
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "conveyor", "build"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, outputs
    _, store, _ = build(project)
    assert len(store.list_releases("app")) == 1
    assert sum("built release" in out for out in outputs) == 1


COUNTING_BUILD = (
    "mkdir -p cache && echo $(( $(cat cache/count 2>/dev/null || echo 0) + 1 )) > cache/count"
    " && cp cache/count built-count"
)


def test_the_build_cache_goes_from_build_to_build_and_never_takes_what_the_app_wrote(
    project: Path,
) -> None:
    set_service(project, build=[COUNTING_BUILD], build_cache=["cache"], writable=["cache"])
    commit_all(project, "a build that counts its builds in its cache")

    def build_count(n: int) -> str:
        (project / "app" / "app.py").write_text(f"print('build {n}')\n")
        commit_all(project, f"build {n}")
        result, _, _ = build(project)
        built.append(Path(result.release.path))
        return (built[-1] / "built-count").read_text().strip()

    built: list[Path] = []
    assert build_count(1) == "1"
    assert build_count(2) == "2"
    # What an instance writes into its release's cache directory is not the build's.
    (built[-1] / "cache" / "count").write_text("999\n")
    assert build_count(3) == "3"
    # A failed build leaves the cache as the last good build left it.
    set_service(project, build=[COUNTING_BUILD, "false"], build_cache=["cache"], writable=["cache"])
    with pytest.raises(BuildError):
        build_count(4)
    set_service(project, build=[COUNTING_BUILD], build_cache=["cache"], writable=["cache"])
    assert build_count(5) == "4"
