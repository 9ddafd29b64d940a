"""End to end: apps made by express-generator and create-next-app, deployed as `conveyor init`
wrote them (no edit to conveyor.yml), with real supervisord and Caddy.

Each test walks one app through a first deploy, a rolling redeploy under load
that reuses node_modules, a broken release that is refused, and rollbacks to
releases that served traffic (Next.js writes its route cache into the release
as it serves: the seal must hold; issue 12, bug 13).
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.loadgen import Load
from tests.support.node_apps import NODE_ENV, copy_app
from tests.support.project import Project, git_project

pytestmark = pytest.mark.slow

# Gentle on a shared two-core machine (a Next.js build takes most of it), yet a
# request in flight at every step of the rolling deploy.
_RATE = 100.0


def _drop_google_fonts(root: Path) -> None:
    """create-next-app's layout loads its fonts from Google Fonts at build time
    (`next/font/google`), which this machine cannot reach: the fonts become stubs
    with the same interface, the only change made to the generated app."""
    layout = next(p for p in (root / "app").glob("layout.*") if p.suffix in (".tsx", ".js"))
    text = layout.read_text()
    found = re.search(r'^import\s*\{([^}]*)\}\s*from\s*["\']next/font/google["\'];?\n', text, re.M)
    assert found, f"{layout} no longer imports next/font/google: drop this edit"
    names = [name.strip() for name in found.group(1).split(",") if name.strip()]
    stubs = "".join(
        f'const {name} = (_options: object) => ({{ variable: "", className: "" }});\n'
        for name in names
    )
    if layout.suffix == ".js":
        stubs = stubs.replace("_options: object", "_options")
    layout.write_text(text[: found.start()] + stubs + text[found.end() :])


def _initialised(tmp_path: Path, kind: str) -> Project:
    root = copy_app(kind, tmp_path / "app")
    if kind == "nextjs":
        _drop_google_fonts(root)
    project = git_project(root, tmp_path / "home")
    project.env.update(NODE_ENV)
    project.run("init", "--listen", project.env["SHOP_STAGING_LISTEN"])
    project.commit("conveyor init")
    return project


@pytest.fixture
def express(tmp_path: Path) -> Iterator[Project]:
    project = _initialised(tmp_path, "express")
    try:
        yield project
    finally:
        project.shutdown()


@pytest.fixture
def nextjs(tmp_path: Path) -> Iterator[Project]:
    project = _initialised(tmp_path, "nextjs")
    try:
        yield project
    finally:
        project.shutdown()


def _url(project: Project, path: str = "/") -> str:
    return f"http://{project.env['SHOP_STAGING_LISTEN']}{path}"


def _page(project: Project, path: str = "/") -> str:
    with urllib.request.urlopen(_url(project, path), timeout=10) as response:
        return str(response.read().decode(errors="replace"))


def _build(project: Project) -> dict[str, Any]:
    """Build the web service's release; its manifest."""
    (built,) = project.json("build")  # type: ignore[misc]
    manifest = Path(built["path"]) / "conveyor-release.json"
    return dict(json.loads(manifest.read_text()), path=built["path"])


def _edit(project: Project, name: str, old: str, new: str) -> None:
    path = project.root / name
    text = path.read_text()
    assert old in text, f"{name} no longer has {old!r}"
    path.write_text(text.replace(old, new, 1))
    project.commit(f"{name}: {new[:40]}")


def _serving(project: Project) -> str:
    report = project.json("status", "staging")
    (service,) = report["environments"][0]["services"]  # type: ignore[index]
    assert all(i["state"] == "serving" for i in service["instances"]), service
    return str(service["release"])


def _redeploy_under_load(project: Project, first: dict[str, Any]) -> dict[str, Any]:
    """Build the committed change, check it reused node_modules, deploy it under load."""
    second = _build(project)
    assert second["dependencies"]["reused_from"] == first["release"]
    lock = "node_modules/.package-lock.json"
    one, two = Path(first["path"], lock), Path(second["path"], lock)
    assert one.stat().st_ino == two.stat().st_ino, "node_modules are hard links, not copies"
    with Load(_url(project), clients=2, rate=_RATE) as load:
        project.run("deploy", "staging", "-m", "v2")
        result = load.stop()
    assert result.failures == 0, result.summary()
    assert result.requests > 20, result.summary()
    assert _serving(project) == second["release"]
    return second


def _refused(project: Project, serving: str) -> None:
    """Deploy the committed broken change: refused, `serving` still serves."""
    failed = project.run("deploy", "staging", "--build", check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    assert _serving(project) == serving


def test_express_generator_app(express: Project) -> None:
    first = _build(express)
    express.run("deploy", "staging")
    assert "<h1>Express</h1>" in _page(express)
    assert _page(express, "/users") == "respond with a resource"

    _edit(express, "public/index.html", "<h1>Express</h1>", "<h1>Express v2</h1>")
    second = _redeploy_under_load(express, first)
    assert "Express v2" in _page(express)

    _edit(express, "app.js", "var express", 'throw new Error("a broken release");\nvar express')
    _refused(express, second["release"])
    assert "Express v2" in _page(express)

    express.run("rollback", "staging")
    assert _serving(express) == first["release"]
    assert "<h1>Express</h1>" in _page(express)


def test_create_next_app(nextjs: Project) -> None:
    first = _build(nextjs)
    assert os.path.commonpath([first["path"], nextjs.root]) != str(nextjs.root)
    nextjs.run("deploy", "staging")
    assert "To get started" in _page(nextjs)
    _page(nextjs, "/favicon.ico")

    _edit(nextjs, "app/page.tsx", "Looking for a starting point", "Conveyor v2: a starting point")
    second = _redeploy_under_load(nextjs, first)
    assert "Conveyor v2: a starting point" in _page(nextjs)
    _assert_writes_only_where_declared(second)

    # Both releases served pages, so Next wrote its route cache into them (bug 13).
    nextjs.run("rollback", "staging")
    assert _serving(nextjs) == first["release"]
    assert "To get started" in _page(nextjs)
    nextjs.run("rollback", "staging", "--to", second["release"])
    assert "Conveyor v2: a starting point" in _page(nextjs)

    # A release changed outside its writable paths is refused; the other keeps serving.
    # (A third Next.js build for a release that fails at start would double this test's
    # time; tests/e2e's Express test covers that case.)
    page = Path(first["path"], ".next/server/app/index.html")
    page.chmod(0o644)
    page.write_text(page.read_text().replace("To get started", "Tampered"))
    refused = nextjs.run("deploy", "staging", "-r", f"web={first['release']}", check=False)
    assert refused.returncode != 0
    assert "modified: .next/server/app/index.html" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert _serving(nextjs) == second["release"]
    assert "Conveyor v2: a starting point" in _page(nextjs)


def _assert_writes_only_where_declared(manifest: dict[str, Any]) -> None:
    """What `next start` wrote in the release while it served is under `writable:`."""
    root = Path(manifest["path"])
    built = (root / "conveyor-release.json").stat().st_mtime
    writable = [root / w for w in manifest["writable"]]
    written = [
        path
        for path in root.rglob("*")
        if path.is_file() and path.stat().st_mtime > built and path.name != "conveyor-files.txt"
    ]
    assert any(root / ".next/server/route-cache" in p.parents for p in written), written
    outside = [p for p in written if not any(w in p.parents for w in writable)]
    assert not outside, outside
