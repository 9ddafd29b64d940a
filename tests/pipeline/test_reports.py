"""Reports read from what real tools write: pytest's JUnit XML, coverage.py's Cobertura XML,
ruff's SARIF and pip-audit's JSON; npm audit's JSON in its documented shape (npm's audit
service is not reachable from these machines)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conveyor.config.models import (
    CoberturaReport,
    JunitReport,
    NpmAuditReport,
    PipAuditReport,
    SarifReport,
)
from conveyor.pipeline.reports import ReportError, read_report

PY = sys.executable


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A tiny package with tests, one of which fails, and a lint problem."""
    (tmp_path / "calc.py").write_text(
        textwrap.dedent(
            """
            import os


            def add(a, b):
                return a + b


            def untested(x):
                if x:
                    return 1
                return 2
            """
        )
    )
    (tmp_path / "test_calc.py").write_text(
        textwrap.dedent(
            """
            from calc import add


            def test_add():
                assert add(1, 2) == 3


            def test_broken():
                assert add(1, 1) == 3
            """
        )
    )
    return tmp_path


def test_junit_from_pytest_counts_tests_and_names_the_failure(project: Path) -> None:
    subprocess.run(
        [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=junit.xml"],
        cwd=project,
        capture_output=True,
        check=False,
    )
    result = read_report(JunitReport(junit="junit.xml"), project)
    assert not result.ok
    assert result.figures["tests"] == 2 and result.figures["failures"] == 1
    assert result.summary.startswith("2 tests, 1 failed, 0 errors, 0 skipped: ")
    assert "test_broken" in result.summary


def test_cobertura_from_coverage_gates_on_the_line_rate(project: Path) -> None:
    (project / "test_calc.py").write_text(
        "from calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    subprocess.run(
        [
            PY,
            "-m",
            "coverage",
            "run",
            "--include=calc.py",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=project,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [PY, "-m", "coverage", "xml", "-o", "coverage.xml"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    lenient = read_report(CoberturaReport(cobertura="coverage.xml", min_coverage=0.5), project)
    strict = read_report(CoberturaReport(cobertura="coverage.xml", min_coverage=0.95), project)
    rate = lenient.figures["line_rate"]
    assert 0.5 < rate < 0.95  # `untested` is not covered
    assert lenient.ok and "at least the minimum 50%" in lenient.summary
    assert not strict.ok and "below the minimum 95%" in strict.summary


def test_sarif_from_ruff_counts_findings_by_severity(project: Path) -> None:
    ruff = Path(PY).parent / "ruff"
    subprocess.run(
        [
            str(ruff),
            "check",
            "--output-format",
            "sarif",
            "-o",
            "ruff.sarif",
            "--select",
            "F401",
            "calc.py",
        ],
        cwd=project,
        check=False,
    )
    data = json.loads((project / "ruff.sarif").read_text())
    assert data["runs"][0]["results"], "ruff must have reported the unused import"
    high = read_report(SarifReport(sarif="ruff.sarif", fail_on="high"), project)
    medium = read_report(SarifReport(sarif="ruff.sarif", fail_on="medium"), project)
    assert "F401 at calc.py:2" in medium.summary
    # ruff gives no security-severity: its level decides
    level = data["runs"][0]["results"][0].get("level", "warning")
    blocking_at_high = level == "error"
    assert high.ok is not blocking_at_high
    assert medium.ok is False
    assert read_report(SarifReport(sarif="ruff.sarif", fail_on="none"), project).ok


def test_sarif_security_severity_scores_win_over_levels(tmp_path: Path) -> None:
    (tmp_path / "scan.sarif").write_text(
        json.dumps(
            {
                "version": "2.1.0",
                "runs": [
                    {
                        "tool": {
                            "driver": {
                                "name": "scanner",
                                "rules": [
                                    {
                                        "id": "sql-injection",
                                        "properties": {"security-severity": "9.8"},
                                    },
                                    {"id": "weak-hash", "properties": {"security-severity": "5.3"}},
                                ],
                            }
                        },
                        "results": [
                            {
                                "ruleId": "sql-injection",
                                "level": "warning",
                                "locations": [
                                    {
                                        "physicalLocation": {
                                            "artifactLocation": {"uri": "app.py"},
                                            "region": {"startLine": 7},
                                        }
                                    }
                                ],
                            },
                            {"ruleId": "weak-hash", "level": "error"},
                        ],
                    }
                ],
            }
        )
    )
    result = read_report(SarifReport(sarif="scan.sarif", fail_on="critical"), tmp_path)
    assert result.figures["critical"] == 1 and result.figures["medium"] == 1
    assert not result.ok and "sql-injection at app.py:7" in result.summary


def test_pip_audit_real_output_and_its_vulnerabilities(tmp_path: Path) -> None:
    audit = Path(PY).parent / "pip-audit"
    if audit.exists():  # the real tool (a dev dependency)
        (tmp_path / "req.txt").write_text("requests==2.19.0\n")  # CVE-2018-18074
        subprocess.run(
            [str(audit), "-r", "req.txt", "--no-deps", "-f", "json", "-o", "real.json"],
            cwd=tmp_path,
            check=False,
            capture_output=True,
            timeout=120,
        )
        real = read_report(PipAuditReport(pip_audit="real.json"), tmp_path)
        # A known-vulnerable pin never passes: found where the vulnerability service
        # answers, "audited none" where it does not (as on the development machines).
        assert not real.ok, real.summary
        assert real.figures["blocking"] >= 1 or "audited none of the" in (real.summary), (
            real.summary
        )
    # The shape pip-audit writes for a vulnerable dependency (its docs' example):
    (tmp_path / "audit.json").write_text(
        json.dumps(
            {
                "dependencies": [
                    {
                        "name": "flask",
                        "version": "0.5",
                        "vulns": [
                            {
                                "id": "PYSEC-2019-179",
                                "fix_versions": ["1.0"],
                                "aliases": ["CVE-2019-1010083"],
                                "description": "...",
                            },
                            {
                                "id": "PYSEC-2018-66",
                                "fix_versions": ["0.12.3"],
                                "aliases": [],
                                "description": "",
                            },
                        ],
                    },
                    {"name": "requests", "version": "2.31.0", "vulns": []},
                ],
                "fixes": [],
            }
        )
    )
    result = read_report(PipAuditReport(pip_audit="audit.json"), tmp_path)
    assert not result.ok and result.figures["high"] == 2
    assert "PYSEC-2019-179 in flask 0.5" in result.summary


def test_pip_audit_says_what_it_could_not_audit(tmp_path: Path) -> None:
    """What pip-audit writes for a dependency it skipped (not on PyPI, or the
    vulnerability service did not answer): counted and named; all of them skipped is
    no audit at all, and the gate fails."""
    skipped = {
        "name": "inhouse-lib",
        "skip_reason": "Dependency not found on PyPI and could not be audited: inhouse-lib (1.2)",
    }
    audited = {"name": "requests", "version": "2.32.3", "vulns": []}
    (tmp_path / "some.json").write_text(json.dumps({"dependencies": [audited, skipped]}))
    (tmp_path / "none.json").write_text(json.dumps({"dependencies": [skipped]}))
    some = read_report(PipAuditReport(pip_audit="some.json"), tmp_path)
    assert some.ok and some.figures["not_audited"] == 1, some
    assert "1 of 2 dependencies not audited (inhouse-lib; first: Dependency not found" in (
        some.summary
    )
    none = read_report(PipAuditReport(pip_audit="none.json"), tmp_path)
    assert not none.ok and none.figures["blocking"] == 0, none
    assert none.summary.startswith("audited none of the 1 dependencies"), none.summary
    assert "reaches pip-audit's vulnerability service" in none.summary


def test_npm_audit_counts_by_severity(tmp_path: Path) -> None:
    (tmp_path / "npm.json").write_text(
        json.dumps(
            {
                "auditReportVersion": 2,
                "vulnerabilities": {
                    "lodash": {
                        "name": "lodash",
                        "severity": "critical",
                        "range": "<4.17.21",
                        "via": [],
                    },
                    "minimist": {
                        "name": "minimist",
                        "severity": "moderate",
                        "range": "<1.2.6",
                        "via": [],
                    },
                },
                "metadata": {"vulnerabilities": {"critical": 1, "moderate": 1}},
            }
        )
    )
    high = read_report(NpmAuditReport(npm_audit="npm.json", fail_on="high"), tmp_path)
    low = read_report(NpmAuditReport(npm_audit="npm.json", fail_on="low"), tmp_path)
    assert not high.ok and high.figures["blocking"] == 1 and "lodash" in high.summary
    assert low.figures["blocking"] == 2 and low.figures["medium"] == 1


@pytest.mark.parametrize(
    ("report", "content", "message"),
    [
        (JunitReport(junit="x.xml"), None, "was not written"),
        (JunitReport(junit="x.xml"), "<html/>", "is not a JUnit report"),
        (CoberturaReport(cobertura="x.xml"), "not xml", "is not XML"),
        (SarifReport(sarif="x.xml"), "{}", "is not a SARIF log"),
        (NpmAuditReport(npm_audit="x.xml"), "[", "is not JSON"),
    ],
)
def test_a_missing_or_wrong_report_says_which_file(
    tmp_path: Path, report: object, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "x.xml").write_text(content)
    with pytest.raises(ReportError, match=message):
        read_report(report, tmp_path)  # type: ignore[arg-type]
