"""`conveyor ci export github`: the pipeline as a GitHub Actions workflow. Pure.

Each pipeline job becomes a workflow job with the same `needs`, its command
as a `run` step in its working directory, its `env`, `timeout-minutes`, its
retries as a shell loop, and its report files uploaded as an artifact. Then
one deploy job per environment calls `conveyor build` and `conveyor deploy`:
environments that the pipeline gates (`require_pipeline`) need every
pipeline job; an environment with `promote_from` needs the deploy job of
that environment and deploys the same release with `conveyor promote`.
"""

from __future__ import annotations

import math
from typing import Any

from conveyor.config.models import (
    CoberturaReport,
    Config,
    JobConfig,
    JunitReport,
    NpmAuditReport,
    PipAuditReport,
    ReportConfig,
    SarifReport,
)

RUNNER = "ubuntu-latest"
CHECKOUT = "actions/checkout@v4"
SETUP_PYTHON = "actions/setup-python@v5"
UPLOAD = "actions/upload-artifact@v4"


def deploy_job_name(environment: str) -> str:
    return f"deploy-{environment}"


def github_workflow(
    config: Config, *, branch: str = "main", python: str = "3.11"
) -> dict[str, Any]:
    """The workflow as a mapping, ready for YAML."""
    jobs: dict[str, Any] = {}
    pipeline = config.pipeline.jobs if config.pipeline is not None else {}
    for name, job in pipeline.items():
        jobs[name] = _pipeline_job(name, job)
    for environment, env_config in config.environments.items():
        needs = sorted(pipeline) if env_config.require_pipeline else []
        source = env_config.promote_from
        if source is not None:
            needs = sorted({*needs, deploy_job_name(source)})
        command = (
            f"conveyor promote {source} {environment} --yes"
            if source is not None
            else f"conveyor deploy {environment} --build"
        )
        jobs[deploy_job_name(environment)] = {
            "name": f"deploy to {environment}",
            "runs-on": RUNNER,
            "needs": needs,
            "environment": environment,
            "concurrency": {"group": f"deploy-{environment}", "cancel-in-progress": False},
            "steps": [
                {"uses": CHECKOUT},
                {"uses": SETUP_PYTHON, "with": {"python-version": python}},
                {"name": "install conveyor", "run": "pip install conveyor-deploy"},
                {"name": f"deploy to {environment}", "run": command},
            ],
        }
        if not needs:
            del jobs[deploy_job_name(environment)]["needs"]
    return {
        "name": f"{config.project} pipeline",
        "on": {"push": {"branches": [branch]}, "workflow_dispatch": {}},
        "permissions": {"contents": "read"},
        "jobs": jobs,
    }


def _pipeline_job(name: str, job: JobConfig) -> dict[str, Any]:
    command = job.run if isinstance(job.run, str) else " ".join(_quote(a) for a in job.run)
    if job.retries:
        tries = job.retries + 1
        command = (
            f"for attempt in $(seq {tries}); do\n  ( {command} ) && exit 0\n"
            f'  echo "attempt $attempt of {tries} failed"\ndone\nexit 1'
        )
    step: dict[str, Any] = {"name": name, "run": command}
    if job.workdir != ".":
        step["working-directory"] = job.workdir
    if job.env:
        step["env"] = dict(job.env)
    steps: list[dict[str, Any]] = [{"uses": CHECKOUT}, step]
    reports = [_report_path(job, r) for r in job.reports]
    if reports:
        steps.append(
            {
                "name": "upload reports",
                "if": "always()",
                "uses": UPLOAD,
                "with": {"name": f"{name}-reports", "path": "\n".join(reports)},
            }
        )
    out: dict[str, Any] = {
        "runs-on": RUNNER,
        "timeout-minutes": max(1, math.ceil(job.timeout * (job.retries + 1) / 60)),
        "steps": steps,
    }
    if job.needs:
        out["needs"] = list(job.needs)
    return out


def _report_path(job: JobConfig, report: ReportConfig) -> str:
    if isinstance(report, JunitReport):
        name = report.junit
    elif isinstance(report, CoberturaReport):
        name = report.cobertura
    elif isinstance(report, SarifReport):
        name = report.sarif
    elif isinstance(report, PipAuditReport):
        name = report.pip_audit
    else:
        assert isinstance(report, NpmAuditReport)
        name = report.npm_audit
    return name if job.workdir == "." else f"{job.workdir}/{name}"


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def job_graph(workflow: dict[str, Any]) -> dict[str, list[str]]:
    """`job -> needs` of a workflow (what `conveyor ci export` wrote, read back)."""
    graph = {}
    for name, job in (workflow.get("jobs") or {}).items():
        needs = job.get("needs", [])
        graph[name] = [needs] if isinstance(needs, str) else list(needs)
    return graph
