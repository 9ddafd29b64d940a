"""`conveyor status` as a process: what it imports, and how it fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conveyor.store import open_store
from conveyor.store.records import ROLLED_BACK

from .conftest import StatusProject

# Runs `conveyor ...` (mode "cli") or the status command function itself (mode
# "direct", no command-line parsing), and reports on stderr which watched
# modules were imported and from which file.
PROBE = r"""
import json, sys, traceback

WATCHED = {"sqlalchemy", "pydantic", "yaml", "conveyor.config.models",
           "conveyor.config.loader", "conveyor.store.repository"}
found = {}

class Probe:
    def find_spec(self, name, path=None, target=None):
        if name in WATCHED and name not in found:
            frames = [f.filename for f in traceback.extract_stack()[:-1]
                      if not f.filename.startswith("<frozen")]
            found[name] = frames[-1] if frames else "?"
        return None

sys.meta_path.insert(0, Probe())
mode, args = sys.argv[1], sys.argv[2:]
sys.argv = ["conveyor", *args]
try:
    if mode == "cli":
        from conveyor.cli.main import main
        main()
    else:
        from conveyor.cli.inspect import status
        status(None, as_json=True)
finally:
    sys.stderr.write("PROBE " + json.dumps(found) + "\n")
"""


def probe(project: StatusProject, tmp_path: Path, mode: str, *args: str) -> dict[str, str]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    result = subprocess.run(
        [sys.executable, str(script), mode, *args],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)  # the report is there
    line = next(x for x in result.stderr.splitlines() if x.startswith("PROBE "))
    found: dict[str, str] = json.loads(line[len("PROBE ") :])
    return found


def test_warm_status_imports_neither_sqlalchemy_nor_pydantic(
    project: StatusProject, tmp_path: Path
) -> None:
    # An interrupted deployment is described by conveyor.engine.deployments, which
    # imports the config models; this test is about the usual case without one.
    with open_store(f"sqlite:///{project.paths.state_db}") as store:
        store.update_deployment("20260501-130000-bbbb", status=ROLLED_BACK, finished=True)
    cold = probe(project, tmp_path, "cli", "status", "--json")
    assert {"sqlalchemy", "conveyor.config.models"} <= set(cold)  # the probe sees imports

    warm = probe(project, tmp_path, "cli", "status", "--json")
    assert not {
        "sqlalchemy",
        "pydantic",  # Typer 0.29 would bring it in for its parameters: pinned below it
        "yaml",
        "conveyor.config.models",
        "conveyor.config.loader",
        "conveyor.store.repository",
    } & set(warm), warm

    assert probe(project, tmp_path, "direct") == {}


def test_bad_config_still_exits_2_with_the_key_path(project: StatusProject) -> None:
    assert project.cli("status").returncode == 0  # the summary is cached now
    text = project.config.read_text()
    project.config.write_text(text.replace("path: /health}", "path: /health, interval: fast}"))
    result = project.cli("status")
    assert result.returncode == 2
    assert 'services/api/health/interval: expected a duration like "5s", got "fast"' in (
        result.stderr
    )
    assert result.stderr.startswith("error: conveyor.yml: 1 problem")
    assert "Traceback" not in result.stderr
    assert result.stderr == project.cli("validate").stderr


def test_invalid_variable_still_exits_2(project: StatusProject) -> None:
    assert project.cli("status").returncode == 0
    result = project.cli("status", DEMO_STAGING_LISTEN="nowhere")
    assert result.returncode == 2
    assert "environments/staging/listen:" in result.stderr
    assert "Traceback" not in result.stderr
