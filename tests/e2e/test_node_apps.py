"""End to end: an app made by create-next-app, deployed as `conveyor init` wrote it (no edit
to conveyor.yml) with real supervisord and Caddy: first deploy, a rolling redeploy under load
that reuses node_modules, rollbacks to releases that served traffic (Next.js writes its route
cache into the release as it serves: the seal must hold; issue 12, bug 13), a modified release
refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.node_apps import (
    build,
    edit,
    initialised,
    page,
    redeploy_under_load,
    serving,
)
from tests.support.project import Project

pytestmark = pytest.mark.slow


@pytest.fixture
def nextjs(tmp_path: Path) -> Iterator[Project]:
    with initialised(tmp_path, "nextjs") as project:
        yield project


def test_create_next_app(nextjs: Project) -> None:
    first = build(nextjs)
    assert os.path.commonpath([first["path"], nextjs.root]) != str(nextjs.root)
    nextjs.run("deploy", "staging")
    assert "To get started" in page(nextjs)
    page(nextjs, "/favicon.ico")

    edit(nextjs, "app/page.tsx", "Looking for a starting point", "Conveyor v2: a starting point")
    second = redeploy_under_load(nextjs, first)
    assert "Conveyor v2: a starting point" in page(nextjs)
    _assert_writes_only_where_declared(second)

    # Both releases served pages, so Next wrote its route cache into them (bug 13).
    nextjs.run("rollback", "staging")
    assert serving(nextjs) == first["release"]
    assert "To get started" in page(nextjs)
    nextjs.run("rollback", "staging", "--to", second["release"])
    assert "Conveyor v2: a starting point" in page(nextjs)

    # A release changed outside its writable paths is refused; the other keeps serving.
    # (A third Next.js build for a release that fails at start would double this test's
    # time; tests/e2e's Express test covers that case.)
    html = Path(first["path"], ".next/server/app/index.html")
    html.chmod(0o644)
    html.write_text(html.read_text().replace("To get started", "Tampered"))
    refused = nextjs.run("deploy", "staging", "-r", f"web={first['release']}", check=False)
    assert refused.returncode != 0
    assert "modified: .next/server/app/index.html" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert serving(nextjs) == second["release"]
    assert "Conveyor v2: a starting point" in page(nextjs)


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
