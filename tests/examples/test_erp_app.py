"""The ERP example's own pipeline passes: `conveyor pipeline run` with its tools from a
virtualenv of its requirements-dev.txt (made once from a cached wheelhouse).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import generators
from tests.support.postgres import scratch_database
from tests.support.project import init_repository

pytestmark = pytest.mark.e2e  # builds a virtualenv of Django and Celery the first time

ERP = Path(__file__).resolve().parents[2] / "examples" / "erp"


def dev_python() -> Path:
    """The Python of a virtualenv with the example's development requirements."""
    requirements = (ERP / "requirements.txt").read_bytes() + (
        ERP / "requirements-dev.txt"
    ).read_bytes()
    venv = generators.CACHE / f"erp-dev-{hashlib.sha256(requirements).hexdigest()[:16]}"
    house = generators.requirements_wheelhouse(ERP / "requirements-dev.txt")
    generators.CACHE.mkdir(parents=True, exist_ok=True)
    with (generators.CACHE / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            pip = [venv / "bin" / "pip", "install", "-q", "--no-index", "--find-links", house]
            subprocess.run(
                [*pip, "-r", ERP / "requirements-dev.txt"],
                check=True,
                capture_output=True,
                timeout=900,
            )
            (venv / ".complete").touch()
    return venv / "bin" / "python"


def test_the_examples_pipeline_runs_its_jobs(tmp_path: Path) -> None:
    """`conveyor pipeline run` on a committed copy of the example, its tools from the
    example's development virtualenv: ruff and bandit to SARIF with nothing found, the
    pytest-django tests on a PostgreSQL database of their own, the coverage gate. The
    audit job runs pip-audit for real; where its vulnerability service does not answer (as
    on the development machines) it audits nothing, says so and fails the pipeline."""
    project = tmp_path / "erp"
    shutil.copytree(ERP, project, ignore=shutil.ignore_patterns(".venv", "reports", ".conveyor"))
    init_repository(project)
    with scratch_database("erp_tests") as (url, _):
        env = {
            **os.environ,  # the deployer's shell: pip's index and certificates for pip-audit
            "ERP_PYTHON": str(dev_python()),
            "ERP_TEST_DATABASE_URL": url,
        }
        ran = subprocess.run(
            [sys.executable, "-m", "conveyor", "pipeline", "run", "--json"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert ran.returncode in (0, 1), ran.stderr
    pipeline = json.loads(ran.stdout)
    assert pipeline["dirty"] is False and pipeline["git_commit"]
    jobs = pipeline["jobs"]
    assert {n: j["status"] for n, j in jobs.items() if n != "audit"} == {
        "lint": "passed",
        "sast": "passed",
        "test": "passed",
        "coverage": "passed",
    }, ran.stderr
    (lint,) = jobs["lint"]["reports"]
    (sast,) = jobs["sast"]["reports"]
    assert (lint["kind"], lint["figures"]["blocking"]) == ("sarif", 0)
    assert (sast["kind"], sast["figures"]["blocking"]) == ("sarif", 0)
    (junit,) = jobs["test"]["reports"]
    assert junit["figures"]["tests"] >= 4 and junit["figures"]["failures"] == 0
    (coverage,) = jobs["coverage"]["reports"]
    config = yaml.safe_load((ERP / "conveyor.yml").read_text())
    gate = config["pipeline"]["jobs"]["coverage"]["reports"][0]["min_coverage"]
    assert coverage["figures"]["line_rate"] * 100 >= float(gate.rstrip("%"))
    (audit,) = jobs["audit"]["reports"]
    if jobs["audit"]["status"] == "failed":
        assert audit["summary"].startswith("audited none of the"), audit
        assert pipeline["status"] == "failed" and ran.returncode == 1
    else:
        assert audit["ok"] and pipeline["status"] == "passed" and ran.returncode == 0
