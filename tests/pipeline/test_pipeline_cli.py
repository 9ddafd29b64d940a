"""`conveyor pipeline run` on the shop (its real lint, tests and coverage), the
`require_pipeline` gate of a deploy, and `conveyor ci export github`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.project import Project, make_project

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "github-workflow.schema.json"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Project]:
    project = make_project(tmp_path)
    project.env["SHOP_PYTHON"] = sys.executable
    try:
        yield project
    finally:
        project.shutdown()


def pipeline(shop: Project, *args: str) -> tuple[int, dict[str, Any]]:
    result = shop.run("pipeline", "run", *args, "--json", check=False)
    return result.returncode, json.loads(result.stdout)


def test_the_shop_pipeline_runs_its_real_checks_and_records_the_commit(shop: Project) -> None:
    code, run = pipeline(shop)
    assert code == 0, run
    assert run["status"] == "passed" and run["dirty"] is False and len(run["git_commit"]) == 40
    jobs = run["jobs"]
    assert [j["status"] for j in jobs.values()] == ["passed"] * 4
    (junit,) = jobs["test"]["reports"]
    assert junit["figures"]["tests"] == 3 and junit["figures"]["failures"] == 0
    (coverage,) = jobs["coverage"]["reports"]
    assert coverage["ok"] and coverage["figures"]["line_rate"] > 0.4
    assert jobs["lint"]["reports"][0]["summary"] == "0 findings (no findings)"
    assert Path(jobs["test"]["log"]).read_text().count("passed") >= 1
    listed = shop.json("pipeline", "list")
    assert isinstance(listed, list) and listed[0]["id"] == run["id"]

    # A failing test fails the run, its dependents are skipped, and it exits 1.
    tests = shop.root / "tests" / "test_api.py"
    tests.write_text(
        tests.read_text() + "\n\ndef test_wrong():\n    assert server.read_count() == 7\n"
    )
    shop.commit("a failing test")
    code, failed = pipeline(shop)
    assert code == 1 and failed["status"] == "failed"
    assert failed["jobs"]["test"]["attempts"] == 2  # retries: 1
    assert "1 failed" in failed["jobs"]["test"]["reason"]
    assert failed["jobs"]["coverage"]["status"] == "skipped"


def test_require_pipeline_gates_a_deploy_and_force_is_recorded(shop: Project) -> None:
    config = yaml.safe_load((shop.root / "conveyor.yml").read_text())
    config["environments"]["staging"]["require_pipeline"] = True
    (shop.root / "conveyor.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shop.commit("staging requires the pipeline")
    shop.run("build")
    refused = shop.run("deploy", "staging", check=False)
    assert refused.returncode == 1 and "staging refuses this deploy" in refused.stderr
    assert "has no pipeline run" in refused.stderr and "--force" in refused.stderr
    (record,) = shop.json("history", "staging")  # type: ignore[misc]
    assert record["status"] == "refused" and "has no pipeline run" in record["error"]  # recorded

    assert pipeline(shop)[0] == 0
    shop.run("deploy", "staging")  # the releases' commit passed

    (shop.root / "api" / "server.py").write_text(
        (shop.root / "api" / "server.py").read_text() + "# v2\n"
    )
    shop.commit("v2")
    v2 = {r["service"]: r["id"] for r in shop.json("build")}  # type: ignore[union-attr]
    refused = shop.run("deploy", "staging", check=False)
    assert refused.returncode == 1 and f"api {v2['api']}" in refused.stderr
    forced = shop.run("deploy", "staging", "--force", "-m", "hotfix")
    assert forced.returncode == 0
    last = shop.json("history", "staging")[0]  # type: ignore[index]
    assert last["status"] == "succeeded"
    assert last["reason"].startswith("hotfix; api ") and "(deployed with --force)" in last["reason"]

    # --release runs the pipeline on a fresh checkout of that release's commit.
    code, run = pipeline(shop, "--release", v2["api"])
    assert code == 0 and run["release_id"] == v2["api"]
    shop.run("deploy", "staging", "-r", f"web={v2['web']}")  # passes the gate now


def test_state_kept_inside_the_project_does_not_make_its_tree_dirty(shop: Project) -> None:
    """Without CONVEYOR_HOME the state lives in <project>/.conveyor, which git must ignore
    (no .gitignore entry needed), or no run would ever count for require_pipeline."""
    del shop.env["CONVEYOR_HOME"]
    shop.home = shop.root / ".conveyor"
    code, run = pipeline(shop)
    assert code == 0 and run["dirty"] is False
    assert (shop.home / "state.db").exists()


def test_github_export_is_a_valid_workflow_with_the_same_job_graph(shop: Project) -> None:
    config = yaml.safe_load((shop.root / "conveyor.yml").read_text())
    production = config["environments"]["production"]
    assert production["require_pipeline"] and production["promote_from"] == "staging"
    text = shop.run("ci", "export", "github", "--stdout").stdout
    workflow = yaml.safe_load(text)
    jsonschema.validate(workflow, json.loads(SCHEMA.read_text()))
    from conveyor.pipeline.github import job_graph

    graph = job_graph(workflow)
    for name, job in config["pipeline"]["jobs"].items():
        assert graph[name] == job.get("needs", [])
    assert set(graph["deploy-production"]) == {*config["pipeline"]["jobs"], "deploy-staging"}
    assert graph["deploy-staging"] == []
    promote = workflow["jobs"]["deploy-production"]["steps"][-1]["run"]
    assert "conveyor promote staging production" in promote
    test_job = workflow["jobs"]["test"]
    assert "for attempt in $(seq 2)" in test_job["steps"][1]["run"]  # retries: 1
    assert test_job["steps"][-1]["with"]["path"] == "reports/junit.xml"
    written = shop.run("ci", "export", "github")
    target = shop.root / ".github" / "workflows" / "conveyor.yml"
    assert str(target) in written.stdout and yaml.safe_load(target.read_text()) == workflow


def test_a_failed_job_shows_the_end_of_its_output(shop: Project) -> None:
    noisy = "for i in range(30): print(f'line {i}')\nraise SystemExit('gave up after 30 lines')"
    shop.configure_top(
        pipeline={
            "jobs": {
                "lint": {"run": [sys.executable, "-c", "import ruff_not_here"]},
                "noisy": {"run": [sys.executable, "-c", noisy]},
                "fine": {"run": [sys.executable, "-c", "print('all good')"]},
            }
        }
    )
    human = shop.run("pipeline", "run", check=False)
    assert human.returncode == 1
    out = human.stdout
    assert "✗ lint: last" in out
    lint_block = out[out.index("✗ lint: last") : out.index("✗ noisy: last")]
    assert "    ModuleNotFoundError: No module named 'ruff_not_here'" in lint_block.splitlines()
    noisy_block = out[out.index("✗ noisy: last 10 lines of") :].splitlines()[1:11]
    assert [line.strip() for line in noisy_block] == [
        *(f"line {i}" for i in range(21, 30)),
        "gave up after 30 lines",
    ]
    assert "all good" not in out  # a passing job's output stays in its log

    code, run = pipeline(shop)
    assert code == 1
    jobs = run["jobs"]
    assert jobs["lint"]["tail"][-1] == "ModuleNotFoundError: No module named 'ruff_not_here'"
    assert jobs["noisy"]["tail"] == [
        *(f"line {i}" for i in range(21, 30)),
        "gave up after 30 lines",
    ]
    assert jobs["fine"]["tail"] == [] and jobs["fine"]["status"] == "passed"
