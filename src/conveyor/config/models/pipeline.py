"""The CI pipeline: jobs, what they need, and the reports that judge them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

from conveyor.config.durations import Duration, describe_value, problem
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.values import (
    _NAME_SCHEMA,
    Command,
    Env,
    Fraction,
    NonNegativeInt,
    PositiveInt,
    RelativePath,
    _name_validator,
)

Severity = Literal["critical", "high", "medium", "low", "none"]
JobName = Annotated[str, _name_validator("job"), _NAME_SCHEMA]


class JunitReport(_Model):
    """JUnit XML (pytest --junitxml, jest-junit, ...): the job fails on failed tests."""

    model_config = ConfigDict(extra="forbid")

    junit: RelativePath = Field(description="The report file, relative to the job's workdir.")


class CoberturaReport(_Model):
    """Cobertura XML (coverage xml, jest --coverageReporters=cobertura): a coverage gate."""

    model_config = ConfigDict(extra="forbid")

    cobertura: RelativePath = Field(description="The report file, relative to the job's workdir.")
    min_coverage: Fraction | None = Field(
        None, description='Line coverage below this fails the job ("80%" or 0.8).'
    )


class _FindingsReport(_Model):
    fail_on: Severity = Field(
        "high",
        description='The job fails on a finding of this severity or worse; "none": never.',
    )


class SarifReport(_FindingsReport):
    """SARIF 2.1 (ruff, semgrep, bandit, CodeQL ...): findings by severity."""

    model_config = ConfigDict(extra="forbid")

    sarif: RelativePath = Field(description="The report file, relative to the job's workdir.")


class PipAuditReport(_FindingsReport):
    """`pip-audit -f json`: vulnerable dependencies (pip-audit gives no severity: each is
    taken as high)."""

    model_config = ConfigDict(extra="forbid")

    pip_audit: RelativePath = Field(description="The report file, relative to the job's workdir.")


class NpmAuditReport(_FindingsReport):
    """`npm audit --json` (npm 7+): vulnerable packages by severity."""

    model_config = ConfigDict(extra="forbid")

    npm_audit: RelativePath = Field(description="The report file, relative to the job's workdir.")


REPORT_KINDS = ("junit", "cobertura", "sarif", "pip_audit", "npm_audit")


def _report_kind(value: object) -> str | None:
    if isinstance(value, BaseModel):
        return next((k for k in REPORT_KINDS if hasattr(value, k)), None)
    if isinstance(value, dict):
        return next((k for k in REPORT_KINDS if k in value), None)
    return None


def _check_report_kind(value: object) -> object:
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, dict):
        raise problem(f"expected a mapping like {{junit: report.xml}}, got {describe_value(value)}")
    kinds = [k for k in REPORT_KINDS if k in value]
    if len(kinds) != 1:
        got = ", ".join(str(k) for k in value) or "nothing"
        raise problem(
            "expected one of junit, cobertura, sarif, pip_audit or npm_audit, got "
            + (got if not kinds else " and ".join(kinds))
        )
    return value


ReportConfig = Annotated[
    Annotated[JunitReport, Tag("junit")]
    | Annotated[CoberturaReport, Tag("cobertura")]
    | Annotated[SarifReport, Tag("sarif")]
    | Annotated[PipAuditReport, Tag("pip_audit")]
    | Annotated[NpmAuditReport, Tag("npm_audit")],
    Discriminator(_report_kind),
    BeforeValidator(_check_report_kind),
]


class JobConfig(_Model):
    """One job of the pipeline: a command, what it needs first, the reports it writes."""

    model_config = ConfigDict(extra="forbid")

    run: Command = Field(
        description="The command: a string (run by /bin/sh -c) or a list of strings (argv)."
    )
    needs: list[JobName] = Field(
        default_factory=list, description="Jobs that must pass before this one starts."
    )
    env: Env = Field(default_factory=dict, description="Environment variables of the job.")
    workdir: RelativePath = Field(
        ".", description="Where the command runs, relative to conveyor.yml."
    )
    timeout: Duration = _duration_field(1800.0, "How long one attempt may run")
    retries: NonNegativeInt = Field(
        0, description="Attempts after the first when the job fails (flaky tools, networks)."
    )
    reports: list[ReportConfig] = Field(
        default_factory=list,
        description="Report files the job writes: junit, cobertura (min_coverage), sarif, "
        "pip_audit or npm_audit (fail_on).",
    )


class PipelineConfig(_Model):
    """The checks every release goes through: lint, tests, audits, coverage, build."""

    model_config = ConfigDict(extra="forbid")

    jobs: dict[JobName, JobConfig] = Field(description="The jobs, by name.")
    parallel: PositiveInt = Field(
        4, description="How many jobs run at the same time at most (as the needs allow)."
    )
