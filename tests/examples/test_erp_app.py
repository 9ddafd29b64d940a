"""The ERP example's own checks pass: its pytest-django tests (on a PostgreSQL database of
their own) above its coverage gate, ruff and bandit, run as its pipeline runs them, from
a virtualenv of its requirements-dev.txt (made once from a cached wheelhouse).

pip-audit, the pipeline's fourth tool, asks PyPI's advisory service and so is left to
`conveyor pipeline run` on a machine that reaches it.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import generators
from tests.support.postgres import scratch_database

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


def pipeline_env(job: str) -> dict[str, str]:
    config = yaml.safe_load((ERP / "conveyor.yml").read_text())
    env = config["pipeline"]["jobs"][job].get("env", {})
    return {k: v for k, v in env.items() if "${" not in v}


def test_the_examples_tests_pass_above_the_coverage_gate(tmp_path: Path) -> None:
    python = dev_python()
    with scratch_database("erp_tests") as (url, _):
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONDONTWRITEBYTECODE": "1",  # nothing written into examples/erp
            **pipeline_env("test"),
            "DATABASE_URL": url,
            "COVERAGE_FILE": str(tmp_path / ".coverage"),
        }
        run = [python, "-m", "coverage", "run", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        tests = subprocess.run(run, cwd=ERP, env=env, capture_output=True, text=True)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert " passed" in tests.stdout and "failed" not in tests.stdout
    report = subprocess.run(
        [python, "-m", "coverage", "report", "--format=total"],
        cwd=ERP,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    config = yaml.safe_load((ERP / "conveyor.yml").read_text())
    gate = config["pipeline"]["jobs"]["coverage"]["reports"][0]["min_coverage"]
    assert int(report.stdout.strip()) >= int(gate.rstrip("%"))


def test_lint_and_bandit_find_nothing(tmp_path: Path) -> None:
    python = dev_python()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    lint = subprocess.run(
        [python, "-m", "ruff", "check", "--no-cache", "erp", "orders", "tests"],
        cwd=ERP,
        env=env,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    sast = subprocess.run(
        [python, "-m", "bandit", "-q", "-r", "erp", "orders"],
        cwd=ERP,
        env=env,
        capture_output=True,
        text=True,
    )
    assert sast.returncode == 0, sast.stdout
