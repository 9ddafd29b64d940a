"""Builds and deploys started at once, with real `conveyor` processes on one project."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.test_shop import change_api
from tests.support.apps import make_app
from tests.support.project import Project, cli_environment, git_project
from tests.support.streams import Lines

pytestmark = pytest.mark.slow

REFUSED_BY_A_DEPLOY = ("is locked by", "is in progress")


def start_all(commands: list[tuple[Project, tuple[str, ...]]]) -> list[subprocess.Popen[str]]:
    """Start every command before waiting for any."""
    return [project.start(*args) for project, args in commands]


def finish(runs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        results.append((run.returncode, out, err))
    return results


def releases_by_source(project: Project) -> Counter[tuple[str, str]]:
    """How many releases each (service, source digest) has."""
    listed = project.json("releases")
    assert isinstance(listed, list)
    manifests = [
        json.loads((Path(r["path"]) / "conveyor-release.json").read_text()) for r in listed
    ]
    return Counter((m["service"], m["source_digest"]) for m in manifests)


def leftovers(home: Path) -> list[Path]:
    """Staging directories (or unsealed trees) a build left in the release store."""
    return [
        p
        for p in (home / "releases").glob("*/*")
        if p.name.startswith(".staging") or not (p / "conveyor-release.json").exists()
    ]


def test_five_deploys_with_build_at_once(shop: Project) -> None:
    results = finish(start_all([(shop, ("deploy", "staging", "--build"))] * 5))

    for code, out, err in results:
        assert "Traceback" not in err + out
        assert code == 0 or any(why in err for why in REFUSED_BY_A_DEPLOY), (code, err)
    assert sum(code == 0 for code, _, _ in results) >= 1
    counts = releases_by_source(shop)
    assert sorted(service for service, _ in counts) == ["api", "web"]
    assert set(counts.values()) == {1}, counts  # one release per source
    assert leftovers(shop.home) == []


def test_builds_of_two_sources_at_once_get_one_release_each(shop: Project, tmp_path: Path) -> None:
    """Two checkouts at different commits share one Conveyor home; three builds each."""
    other = Project(tmp_path / "other", shop.home, shop.env)
    shutil.copytree(shop.root, other.root)
    change_api(other, "v2")

    results = finish(start_all([(shop, ("build",)), (other, ("build",))] * 3))

    for code, out, err in results:
        assert code == 0 and "Traceback" not in err + out, err
    counts = releases_by_source(shop)
    assert Counter(service for service, _ in counts) == {"api": 2, "web": 1}
    assert set(counts.values()) == {1}, counts
    ids = [r["id"] for r in shop.json("releases")]  # type: ignore[union-attr]
    assert len(ids) == len(set(ids)) == 3
    assert leftovers(shop.home) == []


GATED = """
project: gated
services:
  app:
    source: .
    build:
      - [sh, -c, 'cat "$BUILD_GATE" > gate.txt']
    run: [python3, -c, "pass"]
environments:
  dev:
    listen: ${LISTEN}
"""


def test_a_second_build_says_whose_build_it_waits_for(tmp_path: Path) -> None:
    app = make_app(tmp_path, GATED, {"README": "gated\n"})
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    app.env["BUILD_GATE"] = str(gate)
    first = app.start("build")
    second = None
    try:
        first_err = Lines(first.stderr)  # type: ignore[arg-type]
        first_err.wait_for("$ sh -c")  # it holds the build lock and waits at the gate

        second = app.start("build")
        second_err = Lines(second.stderr)  # type: ignore[arg-type]
        waiting = second_err.wait_for("waiting for", timeout=30)
        holder = f"app: waiting for the build of app by tester@example.com (pid {first.pid}, "
        assert holder in waiting and "to finish" in waiting

        with gate.open("w") as opened:  # let the first build go on
            opened.write("open\n")
        assert first.wait(timeout=120) == 0, first_err.rest()
        assert second.wait(timeout=120) == 0, second_err.rest()
    finally:
        for run in (first, second):
            if run is not None and run.poll() is None:
                run.kill()
    assert "source unchanged, reusing release" in second_err.rest()
    assert len(app.json("releases")) == 1  # type: ignore[arg-type]


PLAIN = """
project: plain
services:
  app:
    source: app
    run: [python3, -c, "pass"]
environments:
  dev:
    listen: 127.0.0.1:1
"""


def test_a_build_outside_git_says_which_source_it_took(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    (root / "app").mkdir(parents=True)
    (root / "conveyor.yml").write_text(PLAIN)
    (root / "app" / "index.txt").write_text("hello\n")
    project = Project(root, tmp_path / "home", cli_environment(tmp_path / "home"))
    said = f"warning: app: source: working directory {root / 'app'} (not a git repository)"

    built = project.run("build")
    assert said in built.stderr and "git init" in built.stderr
    again = project.run("build", "--json")  # reused: still said, and in the JSON
    assert said in again.stderr
    [release] = json.loads(again.stdout)
    assert release["reused"] and release["git_commit"] is None
    assert release["source"].startswith(f"working directory {root / 'app'} (not a git")

    git_project(root, tmp_path / "home")
    assert "warning" not in project.run("build").stderr


COLOURFUL = """
project: colourful
services:
  web:
    source: .
    run: [python3, app.py, --port, "${PORT}"]
    # Three 503s fail it at once; the long timeout leaves a slow start under load its time.
    health: {type: http, path: /health, interval: 100ms, start_period: 0s}
    deploy_timeout: 30s
environments:
  staging:
    listen: ${LISTEN}
"""

APP = r"""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

print("\x1b[31mboom: database unreachable\x1b[0m \x1b]0;pwned\x07(retrying)", flush=True)


class Sick(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass  # the log holds the start-up line alone


HTTPServer(("127.0.0.1", int(sys.argv[2])), Sick).serve_forever()
"""


def test_a_failed_deploy_shows_its_error_once_without_escape_codes(tmp_path: Path) -> None:
    app = make_app(tmp_path, COLOURFUL, {"app.py": APP})
    try:
        failed = app.run("deploy", "staging", "--build", check=False)
        history = app.json("history", "staging")
    finally:
        app.shutdown()

    assert failed.returncode == 1
    assert "\x1b" not in failed.stderr and "\x07" not in failed.stderr
    assert failed.stderr.count("boom: database unreachable (retrying)") == 1, failed.stderr
    assert failed.stderr.count("is not healthy") == 1, failed.stderr
    assert "failed: restoring the previous releases" in failed.stderr
    error = failed.stderr[failed.stderr.index("error: ") :]
    assert "boom: database unreachable (retrying)" in error  # the detail is in the error
    assert isinstance(history, list)
    recorded = history[0]["error"]
    assert "boom: database unreachable (retrying)" in recorded and "\x1b" not in recorded


def test_prune_leaves_a_service_alone_while_it_is_built(tmp_path: Path) -> None:
    app = make_app(tmp_path, PLAIN, {"app/index.txt": "v1\n"})
    app.run("build")
    (app.root / "app" / "index.txt").write_text("v2\n")
    app.commit("v2")
    app.run("build")
    lock = app.home / "releases" / ".build-app.lock"

    with lock.open("a") as held:  # what a running build of app holds
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = app.run("prune", "--keep", "1", "--yes")
        assert "kept the old releases of app: being built now" in busy.stderr
        assert "deleted" not in busy.stdout
        assert len(app.json("releases")) == 2  # type: ignore[arg-type]
        fcntl.flock(held, fcntl.LOCK_UN)

    pruned = app.run("prune", "--keep", "1", "--yes")
    assert "deleted app " in pruned.stdout and "kept" not in pruned.stderr
    assert len(app.json("releases")) == 1  # type: ignore[arg-type]


VENV_APP = """
project: venvs
services:
  app:
    source: app
    dependencies:
      paths: [.venv]
      files: [requirements.txt]
      install: ["python3 -m venv --without-pip .venv"]
    run: [.venv/bin/python, -c, "pass"]
environments:
  dev:
    listen: 127.0.0.1:1
"""


def test_prune_deletes_a_shared_virtualenv_with_the_last_release_that_uses_it(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path, VENV_APP, {"app/requirements.txt": "# a\n", "app/index.txt": "1\n"})
    store = app.home / "releases" / ".dependencies"
    app.run("build")
    (app.root / "app" / "index.txt").write_text("2\n")
    app.commit("source only")
    app.run("build")
    assert len(list(store.iterdir())) == 1  # two releases, one virtualenv
    (app.root / "app" / "requirements.txt").write_text("# b\n")
    app.commit("new requirements")
    app.run("build")
    first, second = sorted(store.iterdir(), key=lambda p: p.stat().st_mtime)

    kept = app.run("prune", "--keep", "2", "--yes")  # the oldest release goes, its venv stays
    assert sorted(store.iterdir()) == sorted([first, second])
    assert "stored dependencies" not in kept.stdout
    pruned = app.run("prune", "--keep", "1", "--yes")
    assert list(store.iterdir()) == [second]
    assert f"deleted the stored dependencies {first.name[:12]} (no release uses them)" in (
        pruned.stdout
    )
    newest = app.json("releases")[0]  # type: ignore[index]
    assert (Path(newest["path"]) / ".venv" / "bin" / "python").exists()
