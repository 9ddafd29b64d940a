"""`conveyor explain` and `conveyor analyze --replay`: why a rollout went the way it did.

Built only from what the state store journaled: the deployment, its steps,
and every analysis measurement with its verdict. `explanation` gives the
JSON shape (documented in the README), `render` the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.analysis import AnalysisSpec, replay
from conveyor.analysis.text import seconds
from conveyor.errors import UsageError
from conveyor.store.records import (
    REFUSED,
    DeploymentRecord,
    MeasurementRecordRow,
    StepRecord,
)
from conveyor.store.repository import Store

MAX_ROWS = 12  # measurements shown per analysis run (first, changes, last)


@dataclass(frozen=True)
class AnalysisRunRecord:
    """The measurements of one run of one analysis step."""

    step_index: int
    analysis: str
    run: int
    rows: tuple[MeasurementRecordRow, ...]

    @property
    def records(self) -> list[dict[str, Any]]:
        return [row.data for row in self.rows]

    @property
    def verdict(self) -> dict[str, Any]:
        return dict(self.rows[-1].data["verdict"])


def find_deployment(store: Store, deployment_id: str) -> DeploymentRecord:
    record = store.get_deployment(deployment_id)
    if record is None:
        raise UsageError(
            f'no deployment "{deployment_id}"', hint="list deployments with: conveyor history"
        )
    return record


def analysis_runs(store: Store, deployment_id: str) -> list[AnalysisRunRecord]:
    """Every analysis run of a deployment, in the order they started."""
    grouped: dict[tuple[int, str, int], list[MeasurementRecordRow]] = {}
    for row in store.list_measurements(deployment_id):
        grouped.setdefault((row.step_index, row.analysis, row.run), []).append(row)
    return [
        AnalysisRunRecord(index, name, run, tuple(rows))
        for (index, name, run), rows in grouped.items()
    ]


def explanation(store: Store, deployment_id: str) -> dict[str, Any]:
    """Everything `conveyor explain` says, as data."""
    deployment = find_deployment(store, deployment_id)
    steps = store.list_steps(deployment_id)
    runs = analysis_runs(store, deployment_id)
    hosts = _hosts_of_instances(store, deployment)
    return {
        "id": deployment.id,
        "environment": deployment.environment,
        "kind": deployment.kind,
        "strategy": deployment.strategy,
        "status": deployment.status,
        "user": deployment.user,
        "started_at": deployment.started_at.isoformat(),
        "finished_at": deployment.finished_at.isoformat() if deployment.finished_at else None,
        "releases": deployment.releases,
        "previous": deployment.previous,
        "order": _order(deployment.plan),
        "reason": deployment.error,
        "steps": [_step(s, deployment.plan, hosts) for s in steps],
        "analyses": [
            {
                "step": run.step_index,
                "analysis": run.analysis,
                "run": run.run,
                "spec": run.rows[0].data.get("spec"),
                "measurements": run.records,
                "verdict": run.verdict,
            }
            for run in runs
        ],
        "conclusion": _conclusion(deployment, steps, runs),
    }


def _order(plan: list[dict[str, Any]]) -> list[str]:
    """The services in the order the plan moved them forward (each ends with its
    `mark_current`; `plan.service_sequence` of the journaled form)."""
    marks = (
        step.get("service")
        for step in plan
        if step.get("kind") == "mark_current" and step.get("phase", "forward") == "forward"
    )
    return [name for name in dict.fromkeys(marks) if isinstance(name, str)]


HOST_PLANS = 200  # the environment's deployments whose plans tell where instances were started


def _hosts_of_instances(store: Store, deployment: DeploymentRecord) -> dict[str, str]:
    """Instance -> host, from the start steps of this deployment and the earlier ones."""
    from conveyor.engine.step_hosts import instance_hosts

    earlier = store.list_deployments(deployment.environment, limit=HOST_PLANS)
    return instance_hosts([*(d.plan for d in reversed(earlier)), deployment.plan])


def _step(step: StepRecord, plan: list[dict[str, Any]], hosts: dict[str, str]) -> dict[str, Any]:
    from conveyor.engine.step_hosts import step_hosts

    duration = None
    if step.finished_at is not None:
        duration = round((step.finished_at - step.started_at).total_seconds(), 3)
    planned = plan[step.index - 1] if 0 < step.index <= len(plan) else {}
    return {
        "index": step.index,
        "kind": step.kind,
        "service": planned.get("service") if planned.get("kind") == step.kind else None,
        "description": step.description,
        "status": step.status,
        "duration_s": duration,
        "note": step.error,
        "hosts": step_hosts(planned, hosts) if planned.get("kind") == step.kind else [],
    }


def _conclusion(
    deployment: DeploymentRecord, steps: Sequence[StepRecord], runs: Sequence[AnalysisRunRecord]
) -> str:
    status = deployment.status
    verdicts = [(run, run.verdict) for run in runs]
    failed = [(run, v) for run, v in verdicts if v["decision"] == "FAIL"]
    if failed:
        run, verdict = failed[0]
        return (
            f"{status.replace('_', ' ')}: analysis {run.analysis} (step {run.step_index}) "
            f"failed: {verdict['message']}"
        )
    if status == "succeeded":
        passed = [
            f"{run.analysis} ({v['message']})" for run, v in verdicts if v["decision"] == "PASS"
        ]
        skipped = [s for s in steps if s.status == "skipped"]
        progressive = bool(runs) or deployment.strategy in ("canary", "blue_green")
        parts = ["promoted" if progressive else "succeeded"]
        if passed:
            parts.append("after analyses passed: " + "; ".join(passed))
        if skipped:
            parts.append(
                "with steps skipped: " + "; ".join(f"{s.index} ({s.error})" for s in skipped)
            )
        return ", ".join(parts) if len(parts) > 1 else f"{parts[0]}: every step completed"
    if status == REFUSED:
        return f"refused before anything changed: {deployment.error or 'no reason recorded'}"
    if deployment.error:
        return f"{status.replace('_', ' ')}: {deployment.error}"
    return status.replace("_", " ")


def render(data: dict[str, Any]) -> list[str]:
    """The text of `conveyor explain`."""
    lines = [
        f"{data['kind']} {data['id']} of {data['environment']} ({data['strategy']}): "
        f"{data['status'].replace('_', ' ')}",
        f"  by {data['user']}, started {data['started_at']}",
    ]
    for service, release in sorted(data["releases"].items()):
        before = data["previous"].get(service)
        if before != release:
            lines.append(f"  {service}: {release} (was {before or 'not deployed'})")
    if len(data.get("order") or ()) > 1:
        lines.append(f"  order: {' -> '.join(data['order'])}")
    lines.append("")
    lines.append("steps:")
    for step in data["steps"]:
        took = f" {step['duration_s']:.2f}s" if step["duration_s"] is not None else ""
        note = f" - {step['note']}" if step["note"] else ""
        where = f" on {', '.join(step['hosts'])}" if step.get("hosts") else ""
        lines.append(
            f"  {step['index']:>3}. {step['description']}{where}: {step['status']}{took}{note}"
        )
    for run in data["analyses"]:
        lines.append("")
        lines.extend(_render_run(run))
    lines.append("")
    lines.append(f"conclusion: {data['conclusion']}")
    return lines


def _render_run(run: dict[str, Any]) -> list[str]:
    measurements = run["measurements"]
    spec = AnalysisSpec.from_dict(run["spec"]) if run.get("spec") else None
    head = (
        f"analysis {run['analysis']} (step {run['step']}, run {run['run']}): "
        f"{len(measurements)} measurements"
    )
    lines = [head]
    if spec is not None:
        lines.append(f"  settings: {describe_spec(spec)}")
    for record in _sample(measurements):
        verdict = record["verdict"]
        traffic = ", ".join(
            f"{name} {stats['requests']} req/{stats['errors']} 5xx"
            for name, stats in record["releases"].items()
            if stats["requests"]
        )
        when = seconds(verdict["elapsed"])
        lines.append(f"  {when:>6} {verdict['decision']:<12} {traffic or 'no traffic'}")
    verdict = run["verdict"]
    lines.append(f"  verdict: {verdict['message']}")
    for check in verdict.get("checks", []):
        lines.append(f"    {check['decision']:<8} {check['message']}")
    return lines


def describe_spec(spec: AnalysisSpec) -> str:
    parts = []
    if spec.thresholds:
        parts.append("thresholds " + ", ".join(str(t) for t in spec.thresholds))
    comparative = spec.comparative
    if comparative is not None:
        tests = [
            n
            for n, on in (("errors", comparative.error_rate), ("latency", comparative.latency))
            if on
        ]
        parts.append(
            f"sequential comparison of {' and '.join(tests)} with the {comparative.against} "
            f"(tolerance +{comparative.max_relative_increase:.0%}, alpha {spec.alpha:.2%})"
        )
    parts.append(f"min_requests {spec.min_requests}")
    parts.append(
        f"interval {seconds(spec.interval)}, duration {seconds(spec.duration)}, "
        f"max {seconds(spec.max_duration)}, inconclusive: {spec.on_inconclusive}"
    )
    return "; ".join(parts)


def _sample(measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first and last measurements and those where the decision changed, at most MAX_ROWS."""
    if len(measurements) <= MAX_ROWS:
        return measurements
    keep = {0, len(measurements) - 1}
    for i in range(1, len(measurements)):
        if measurements[i]["verdict"]["decision"] != measurements[i - 1]["verdict"]["decision"]:
            keep.add(i)
    step = max(1, len(measurements) // MAX_ROWS)
    keep.update(range(0, len(measurements), step))
    chosen = sorted(keep)
    if len(chosen) > MAX_ROWS:
        must = {0, len(measurements) - 1}
        chosen = sorted(must | set(chosen[:: max(1, len(chosen) // MAX_ROWS)]))
    return [measurements[i] for i in chosen]


def replay_runs(
    store: Store, deployment_id: str, overrides: Iterable[str], step: int | None = None
) -> list[dict[str, Any]]:
    """Each recorded analysis run judged again with `overrides` (`--set`)."""
    find_deployment(store, deployment_id)
    runs = [r for r in analysis_runs(store, deployment_id) if step is None or r.step_index == step]
    if not runs:
        raise UsageError(
            f"deployment {deployment_id} recorded no analysis"
            + (f" at step {step}" if step is not None else ""),
            hint=f"see its steps with: conveyor explain {deployment_id}",
        )
    changes = list(overrides)
    out = []
    for run in runs:
        analysis = replay(run.records, changes)
        out.append(
            {
                "step": run.step_index,
                "analysis": run.analysis,
                "run": run.run,
                "overrides": changes,
                "settings": describe_spec(analysis.spec),
                "recorded": run.verdict,
                "replayed": analysis.verdict.to_dict(),
                "measurements": len(run.rows),
                "used": len(analysis.records),
            }
        )
    return out


def render_replay(results: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for result in results:
        recorded, replayed = result["recorded"], result["replayed"]
        same = recorded["decision"] == replayed["decision"]
        lines.append(
            f"analysis {result['analysis']} (step {result['step']}, run {result['run']}), "
            f"{result['measurements']} measurements"
            + (f" with {' '.join(result['overrides'])}" if result["overrides"] else "")
        )
        lines.append(f"  settings: {result['settings']}")
        lines.append(f"  recorded: {recorded['message']}")
        lines.append(f"  replayed: {replayed['message']}")
        for check in replayed.get("checks", []):
            lines.append(f"    {check['decision']:<8} {check['message']}")
        if replayed["decision"] == "CONTINUE":
            lines.append("  the recording ends before these settings decide")
        lines.append("  same decision" if same else "  a different decision")
    return lines
