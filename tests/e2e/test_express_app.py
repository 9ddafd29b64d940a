"""End to end: an app made by express-generator, deployed as `conveyor init` wrote it (no
edit to conveyor.yml) with real supervisord and Caddy: first deploy, a rolling redeploy under
load that reuses node_modules, a release that crashes at start refused, a rollback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.node_apps import (
    build,
    edit,
    initialised,
    page,
    redeploy_under_load,
    refused,
    serving,
)
from tests.support.project import Project

pytestmark = pytest.mark.slow


@pytest.fixture
def express(tmp_path: Path) -> Iterator[Project]:
    with initialised(tmp_path, "express") as project:
        yield project


def test_express_generator_app(express: Project) -> None:
    first = build(express)
    express.run("deploy", "staging")
    assert "<h1>Express</h1>" in page(express)
    assert page(express, "/users") == "respond with a resource"

    edit(express, "public/index.html", "<h1>Express</h1>", "<h1>Express v2</h1>")
    second = redeploy_under_load(express, first)
    assert "Express v2" in page(express)

    edit(express, "app.js", "var express", 'throw new Error("a broken release");\nvar express')
    refused(express, second["release"])
    assert "Express v2" in page(express)

    express.run("rollback", "staging")
    assert serving(express) == first["release"]
    assert "<h1>Express</h1>" in page(express)
