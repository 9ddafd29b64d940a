"""Express and Next.js detection, on apps made by express-generator and create-next-app."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conveyor.config.loader import parse_config
from conveyor.frameworks import detect, express, nextjs
from conveyor.frameworks.node import installer, node_script
from conveyor.frameworks.render import render
from tests.support.node_apps import copy_app
from tests.support.project import CONVEYOR


def _package(root: Path, **fields: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps(fields))
    return root


def test_express_generator_app(tmp_path: Path) -> None:
    root = copy_app("express", tmp_path / "app")
    found = detect(root)
    assert found is not None and found.framework == "Express"
    assert "express-generator" in found.evidence
    assert found.service["run"] == ["node", "bin/www"]
    assert found.service["dependencies"] == {
        "paths": ["node_modules"],
        "files": ["package.json", "package-lock.json"],
        "install": ["npm ci --omit=dev"],
    }
    assert found.service["health"]["path"] == "/"
    assert any("all network interfaces" in note for note in found.notes)
    parse_config(render(found, project="app"), {}, source="test")


def test_create_next_app(tmp_path: Path) -> None:
    root = copy_app("nextjs", tmp_path / "app")
    found = detect(root)
    assert found is not None and found.framework == "Next.js"
    service = found.service
    assert service["dependencies"]["install"] == ["npm ci"]
    assert service["dependencies"]["files"] == ["package.json", "package-lock.json"]
    assert service["build"] == ["npm run build"]
    assert service["run"] == 'exec node_modules/.bin/next start -H "$HOST" -p "$PORT"'
    assert service["writable"] == [".next/cache", ".next/server/route-cache"]
    assert service["build_cache"] == [".next/cache"]
    assert service["env"] == {"NEXT_TELEMETRY_DISABLED": "1"}
    assert {".next/", "node_modules/"} <= set(service["exclude"])
    parse_config(render(found, project="app"), {}, source="test")


def test_init_writes_a_config_that_validates(tmp_path: Path) -> None:
    root = copy_app("nextjs", tmp_path / "site")
    done = subprocess.run(
        [*CONVEYOR, "init", str(root), "--json"], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout)["framework"] == "Next.js"
    config = yaml.safe_load((root / "conveyor.yml").read_text())
    assert config["services"]["web"]["writable"] == [".next/cache", ".next/server/route-cache"]
    assert config["environments"] == {"staging": {"listen": "127.0.0.1:8080"}}
    again = subprocess.run([*CONVEYOR, "init", str(root)], capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.parametrize(
    ("files", "command", "lockfile"),
    [
        ({"package-lock.json": "{}"}, "npm ci", "package-lock.json"),
        ({"yarn.lock": ""}, "yarn install --frozen-lockfile", "yarn.lock"),
        ({"yarn.lock": "", ".yarnrc.yml": ""}, "yarn install --immutable", "yarn.lock"),
        ({"pnpm-lock.yaml": ""}, "pnpm install --frozen-lockfile", "pnpm-lock.yaml"),
        ({}, "npm install", None),
    ],
)
def test_installer_follows_the_lock_file(
    tmp_path: Path, files: dict[str, str], command: str, lockfile: str | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = installer(tmp_path)
    assert (found.command, found.lockfile) == (command, lockfile)
    assert found.dependencies()["files"] == ["package.json"] + ([lockfile] if lockfile else [])
    assert bool(found.notes()) == (lockfile is None)


def test_production_install_leaves_dev_dependencies_out(tmp_path: Path) -> None:
    assert installer(tmp_path, production=True).command == "npm install --omit=dev"
    (tmp_path / "pnpm-lock.yaml").write_text("")
    assert installer(tmp_path, production=True).command == "pnpm install --frozen-lockfile --prod"


def test_express_without_generator_runs_its_start_script(tmp_path: Path) -> None:
    root = _package(
        tmp_path / "api", dependencies={"express": "^5"}, scripts={"start": "node src/server.js"}
    )
    (root / "src").mkdir()
    (root / "src/server.js").write_text("")
    found = express.detect(root)
    assert found is not None and found.service["run"] == ["node", "src/server.js"]
    assert "node src/server.js" in found.evidence


def test_express_with_nothing_to_run_is_not_detected(tmp_path: Path) -> None:
    assert express.detect(_package(tmp_path, dependencies={"express": "^5"})) is None


@pytest.mark.parametrize("text", ["not json", "[]", '{"dependencies": []}'])
def test_unreadable_package_json_is_no_project(tmp_path: Path, text: str) -> None:
    (tmp_path / "package.json").write_text(text)
    (tmp_path / "index.js").write_text("")
    assert express.detect(tmp_path) is None and nextjs.detect(tmp_path) is None


def test_next_with_yarn_builds_with_next_itself(tmp_path: Path) -> None:
    root = _package(tmp_path, dependencies={"next": "16"}, scripts={"build": "next build"})
    (root / "yarn.lock").write_text("")
    found = nextjs.detect(root)
    assert found is not None
    assert found.service["build"] == ["node_modules/.bin/next build"]
    assert found.service["dependencies"]["install"] == ["yarn install --frozen-lockfile"]


def test_next_app_with_express_is_next(tmp_path: Path) -> None:
    root = _package(tmp_path, dependencies={"next": "16", "express": "^5"})
    (root / "server.js").write_text("")
    found = detect(root)
    assert found is not None and found.framework == "Next.js"


@pytest.mark.parametrize(
    ("script", "entry"),
    [
        ("node ./bin/www", "bin/www"),
        ("node server.js", "server.js"),
        ("nodemon x.js", None),
        ("node --inspect x.js", None),
        (None, None),
        ("node 'unclosed", None),
    ],
)
def test_node_script(script: str | None, entry: str | None) -> None:
    assert node_script(script) == entry
