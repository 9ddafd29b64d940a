"""Reading the reports pipeline jobs write: JUnit, Cobertura, SARIF, pip-audit, npm audit.

Each reader turns a file into a `ReportResult`: the figures (tests and
failures, line coverage, findings per severity), whether the job's gate
passes, and one line for people. Pure apart from reading the file.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.config.models import (
    CoberturaReport,
    JunitReport,
    NpmAuditReport,
    PipAuditReport,
    ReportConfig,
    SarifReport,
)

SEVERITIES = ("critical", "high", "medium", "low")  # worst first


class ReportError(ValueError):
    """A report file is missing or not what its kind says; the message names it."""


@dataclass(frozen=True)
class ReportResult:
    """What one report says, and whether the job's gate on it passes."""

    kind: str  # "junit" | "cobertura" | "sarif" | "pip_audit" | "npm_audit"
    path: str
    ok: bool
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "ok": self.ok,
            "summary": self.summary,
            "figures": dict(self.figures),
        }


def read_report(report: ReportConfig, workdir: Path) -> ReportResult:
    """Read the report a job wrote in `workdir`; `ReportError` when it cannot."""
    if isinstance(report, JunitReport):
        return read_junit(workdir / report.junit, report.junit)
    if isinstance(report, CoberturaReport):
        return read_cobertura(workdir / report.cobertura, report.cobertura, report.min_coverage)
    if isinstance(report, SarifReport):
        name = report.sarif
        kind, findings = "sarif", sarif_findings(workdir / name, base=workdir)
    elif isinstance(report, PipAuditReport):
        return read_pip_audit(workdir / report.pip_audit, report.pip_audit, report.fail_on)
    else:
        assert isinstance(report, NpmAuditReport)
        name = report.npm_audit
        kind, findings = "npm_audit", npm_audit_findings(workdir / name)
    return findings_result(kind, name, findings, report.fail_on)


def _xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()  # noqa: S314 - the project's own report
    except FileNotFoundError:
        raise ReportError(f"{path} was not written") from None
    except ET.ParseError as exc:
        raise ReportError(f"{path} is not XML: {exc}") from None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path} was not written") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not JSON: {exc}") from None


# -- JUnit --------------------------------------------------------------------------------


def read_junit(path: Path, shown: str) -> ReportResult:
    """`<testsuites>` or a single `<testsuite>`: counts summed over the suites."""
    root = _xml(path)
    suites = [root] if root.tag == "testsuite" else root.findall(".//testsuite")
    if root.tag not in ("testsuite", "testsuites"):
        raise ReportError(f"{path} is not a JUnit report (root element <{root.tag}>)")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed: list[str] = []
    for suite in suites:
        for key in counts:
            counts[key] += int(float(suite.get(key, 0) or 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname', '')}.{case.get('name', '')}".strip("."))
    bad = counts["failures"] + counts["errors"]
    summary = (
        f"{counts['tests']} tests, {counts['failures']} failed, {counts['errors']} errors, "
        f"{counts['skipped']} skipped"
    )
    if failed:
        summary += ": " + ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
    return ReportResult("junit", shown, bad == 0, summary, {**counts, "failed": failed})


# -- Cobertura ----------------------------------------------------------------------------


def read_cobertura(path: Path, shown: str, minimum: float | None) -> ReportResult:
    root = _xml(path)
    if root.tag != "coverage" or root.get("line-rate") is None:
        raise ReportError(f"{path} is not a Cobertura report (no <coverage line-rate=...>)")
    rate = float(root.get("line-rate") or 0)
    figures: dict[str, Any] = {"line_rate": rate}
    for key in ("lines-covered", "lines-valid", "branch-rate"):
        if root.get(key) is not None:
            figures[key.replace("-", "_")] = float(root.get(key) or 0)
    summary = f"line coverage {rate * 100:.1f}%"
    ok = True
    if minimum is not None:
        ok = rate + 1e-9 >= minimum
        summary += f" ({'at least' if ok else 'below'} the minimum {minimum * 100:g}%)"
        figures["min_coverage"] = minimum
    return ReportResult("cobertura", shown, ok, summary, figures)


# -- findings: SARIF, pip-audit, npm audit --------------------------------------------------


@dataclass(frozen=True)
class Finding:
    severity: str  # one of SEVERITIES
    title: str  # rule id or advisory id, and where


def findings_result(kind: str, shown: str, findings: list[Finding], fail_on: str) -> ReportResult:
    """Count findings per severity; the gate fails on one at `fail_on` or worse."""
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    limit = SEVERITIES.index(fail_on) if fail_on in SEVERITIES else -1
    blocking = [f for f in findings if limit >= 0 and SEVERITIES.index(f.severity) <= limit]
    listed = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"
    summary = f"{len(findings)} findings ({listed})"
    if blocking:
        titles = ", ".join(f.title for f in blocking[:5]) + (" ..." if len(blocking) > 5 else "")
        summary += f"; {len(blocking)} at {fail_on} or worse: {titles}"
    figures = {**counts, "fail_on": fail_on, "blocking": len(blocking)}
    return ReportResult(kind, shown, not blocking, summary, figures)


def severity_of_score(score: float) -> str:
    """CVSS-style score to a severity: 9+ critical, 7+ high, 4+ medium, else low."""
    if score >= 9:
        return "critical"
    if score >= 7:
        return "high"
    if score >= 4:
        return "medium"
    return "low"


_SARIF_LEVELS = {"error": "high", "warning": "medium", "note": "low", "none": "low"}


def sarif_findings(path: Path, base: Path | None = None) -> list[Finding]:
    """Every result of every run. The severity is the rule's `security-severity` score
    when it has one (GitHub's convention), else the result's level (error: high,
    warning: medium, note: low)."""
    data = _json(path)
    if not isinstance(data, dict) or "runs" not in data:
        raise ReportError(f"{path} is not a SARIF log (no runs)")
    findings = []
    for run in data.get("runs") or []:
        rules = {}
        driver = ((run.get("tool") or {}).get("driver")) or {}
        for rule in driver.get("rules") or []:
            rules[rule.get("id")] = rule
        for result in run.get("results") or []:
            rule = rules.get(result.get("ruleId"), {})
            score = (rule.get("properties") or {}).get("security-severity")
            level = result.get("level") or (rule.get("defaultConfiguration") or {}).get(
                "level", "warning"
            )
            try:
                severity = severity_of_score(float(score)) if score is not None else None
            except ValueError:
                severity = None
            location = ""
            for loc in result.get("locations") or []:
                physical = loc.get("physicalLocation") or {}
                uri = _shown_uri((physical.get("artifactLocation") or {}).get("uri", ""), base)
                line = (physical.get("region") or {}).get("startLine")
                location = f" at {uri}:{line}" if line else f" at {uri}"
                break
            findings.append(
                Finding(
                    severity or _SARIF_LEVELS.get(level, "medium"),
                    f"{result.get('ruleId', '?')}{location}",
                )
            )
    return findings


def _shown_uri(uri: str, base: Path | None) -> str:
    """A result's file as people read it: relative to the job's directory when inside it."""
    from urllib.parse import unquote, urlsplit

    if uri.startswith("file:"):
        uri = unquote(urlsplit(uri).path)
    if base is not None and uri.startswith("/"):
        try:
            return str(Path(uri).relative_to(base.resolve()))
        except ValueError:
            return uri
    return uri


def _pip_audit_dependencies(path: Path) -> list[dict[str, Any]]:
    data = _json(path)
    dependencies = data.get("dependencies") if isinstance(data, dict) else data
    if not isinstance(dependencies, list):
        raise ReportError(f"{path} is not pip-audit JSON (no dependencies)")
    return [d for d in dependencies if isinstance(d, dict)]


def pip_audit_findings(path: Path) -> list[Finding]:
    """`pip-audit -f json`: each vulnerability of each dependency. pip-audit reports no
    severity, so every one counts as high."""
    return _vulnerabilities(_pip_audit_dependencies(path))


def _vulnerabilities(dependencies: list[dict[str, Any]]) -> list[Finding]:
    return [
        Finding("high", f"{vuln.get('id', '?')} in {dep.get('name')} {dep.get('version', '')}")
        for dep in dependencies
        for vuln in dep.get("vulns") or []
    ]


def read_pip_audit(path: Path, shown: str, fail_on: str) -> ReportResult:
    """The findings' gate, and what pip-audit could not audit: a dependency it skipped
    (its `skip_reason`: not on PyPI, or the vulnerability service did not answer) is
    counted and named. When it skipped every one, nothing was audited and the gate fails:
    0 findings would say the dependencies are safe when nobody looked."""
    dependencies = _pip_audit_dependencies(path)
    result = findings_result("pip_audit", shown, _vulnerabilities(dependencies), fail_on)
    skipped = [d for d in dependencies if d.get("skip_reason")]
    if not skipped:
        return result
    figures = {**result.figures, "dependencies": len(dependencies), "not_audited": len(skipped)}
    reason = str(skipped[0]["skip_reason"])
    if len(skipped) == len(dependencies):
        summary = (
            f"audited none of the {len(dependencies)} dependencies (pip-audit skipped each; "
            f"first: {reason}): check that this machine reaches pip-audit's vulnerability "
            "service"
        )
        return ReportResult("pip_audit", shown, False, summary, figures)
    names = ", ".join(str(d.get("name", "?")) for d in skipped[:5])
    more = " ..." if len(skipped) > 5 else ""
    summary = (
        f"{result.summary}; {len(skipped)} of {len(dependencies)} dependencies not audited "
        f"({names}{more}; first: {reason})"
    )
    return ReportResult("pip_audit", shown, result.ok, summary, figures)


_NPM = {"critical": "critical", "high": "high", "moderate": "medium", "low": "low", "info": "low"}


def npm_audit_findings(path: Path) -> list[Finding]:
    """`npm audit --json` (npm 7+): one finding per vulnerable package, at its severity."""
    data = _json(path)
    vulnerabilities = data.get("vulnerabilities") if isinstance(data, dict) else None
    if not isinstance(vulnerabilities, dict):
        raise ReportError(f"{path} is not npm audit JSON (no vulnerabilities)")
    return [
        Finding(_NPM.get(str(v.get("severity")), "medium"), f"{name} ({v.get('range', '')})")
        for name, v in sorted(vulnerabilities.items())
    ]
