"""Express and Next.js apps made by their own generators, cached between test runs, and the
steps the end-to-end tests take with them.

express-generator and create-next-app run once per machine (the apps, with a
lock file, and npm's cache live in /tmp/conveyor-tests-generators); each test
gets a copy without node_modules, in its own git repository, as a user's
checkout would be. npm's cache makes the releases' `npm ci` work from disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.loadgen import Load
from tests.support.project import Project, free_port, git_project

CACHE = Path("/tmp/conveyor-tests-generators")
NPM_CACHE = CACHE / "npm-cache"
# What the apps' builds and installs need besides Conveyor's test environment.
NODE_ENV = {
    "npm_config_cache": str(NPM_CACHE),
    "npm_config_prefer_offline": "true",
    "npm_config_audit": "false",
    "npm_config_fund": "false",
    "npm_config_update_notifier": "false",
    "NEXT_TELEMETRY_DISABLED": "1",
}
_GENERATORS = {
    "express": [
        ["npx", "--yes", "express-generator@4", "--no-view", "app"],
        ["npm", "install", "--prefix", "app"],
    ],
    "nextjs": [
        ["npx", "--yes", "create-next-app@latest", "app", "--yes", "--use-npm", "--disable-git"],
    ],
}
_COPY_IGNORE = shutil.ignore_patterns("node_modules", ".next", ".git")
# Gentle on a shared two-core machine (a Next.js build takes most of it), yet a
# request in flight at every step of the rolling deploy.
_RATE = 100.0


def generated(kind: str) -> Path:
    """The cached app `kind` ("express" or "nextjs"), generated on first use."""
    if shutil.which("npx") is None:
        pytest.skip("Node.js (npx) is not installed")
    CACHE.mkdir(parents=True, exist_ok=True)
    done = CACHE / kind / "app"
    with (CACHE / f".{kind}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers: one generates, the others wait
        if not (done / "package-lock.json").is_file():
            work = CACHE / f"{kind}.partial"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            for argv in _GENERATORS[kind]:
                subprocess.run(
                    argv,
                    cwd=work,
                    env={**os.environ, **NODE_ENV},
                    check=True,
                    capture_output=True,
                    timeout=600,
                    stdin=subprocess.DEVNULL,
                )
            shutil.rmtree(CACHE / kind, ignore_errors=True)
            work.rename(CACHE / kind)
    return done


def copy_app(kind: str, destination: Path) -> Path:
    """A fresh copy of the generated app at `destination` (no node_modules, no build)."""
    shutil.copytree(generated(kind), destination, ignore=_COPY_IGNORE)
    return destination


def drop_google_fonts(root: Path) -> None:
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


@contextlib.contextmanager
def initialised(tmp_path: Path, kind: str) -> Iterator[Project]:
    """A copy of the generated app in git, with the conveyor.yml `conveyor init` wrote
    (committed, as a user would; only --listen is chosen, for a free port); everything
    it started is stopped on the way out."""
    root = copy_app(kind, tmp_path / "app")
    if kind == "nextjs":
        drop_google_fonts(root)
    project = git_project(root, tmp_path / "home")
    project.env.update(NODE_ENV, LISTEN=f"127.0.0.1:{free_port()}")
    project.run("init", "--listen", project.env["LISTEN"])
    project.commit("conveyor init")
    try:
        yield project
    finally:
        project.shutdown()


def url(project: Project, path: str = "/") -> str:
    return f"http://{project.env['LISTEN']}{path}"


def page(project: Project, path: str = "/") -> str:
    with urllib.request.urlopen(url(project, path), timeout=10) as response:
        return str(response.read().decode(errors="replace"))


def build(project: Project) -> dict[str, Any]:
    """Build the web service's release; its manifest."""
    # `next build` is CPU-bound: 20 s on a quiet machine, minutes on a loaded one.
    (built,) = json.loads(project.run("build", "--json", timeout=900).stdout)
    manifest = Path(built["path"]) / "conveyor-release.json"
    return dict(json.loads(manifest.read_text()), path=built["path"])


def edit(project: Project, name: str, old: str, new: str) -> None:
    path = project.root / name
    text = path.read_text()
    assert old in text, f"{name} no longer has {old!r}"
    path.write_text(text.replace(old, new, 1))
    project.commit(f"{name}: {new[:40]}")


def serving(project: Project) -> str:
    report = project.json("status", "staging")
    (service,) = report["environments"][0]["services"]  # type: ignore[index]
    assert all(i["state"] == "serving" for i in service["instances"]), service
    return str(service["release"])


def redeploy_under_load(project: Project, first: dict[str, Any]) -> dict[str, Any]:
    """Build the committed change, check it reused node_modules, deploy it under load."""
    second = build(project)
    assert second["dependencies"]["reused_from"] == first["release"]
    lock = "node_modules/.package-lock.json"
    one, two = Path(first["path"], lock), Path(second["path"], lock)
    assert one.stat().st_ino == two.stat().st_ino, "node_modules are hard links, not copies"
    with Load(url(project), clients=2, rate=_RATE) as load:
        project.run("deploy", "staging", "-m", "v2")
        result = load.stop()
    assert result.failures == 0, result.summary()
    assert result.requests > 20, result.summary()
    assert serving(project) == second["release"]
    return second


def refused(project: Project, current: str) -> None:
    """Deploy the committed broken change: refused, release `current` still serves."""
    failed = project.run("deploy", "staging", "--build", check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    assert serving(project) == current
