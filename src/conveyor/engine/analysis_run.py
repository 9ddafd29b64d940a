"""Runs an analysis step against live traffic: snapshots from the router, journaled verdicts.

Every `spec.interval` the router's cumulative counters of each instance of
the service are summed per role (canary, baseline, stable) and fed to the
pure `conveyor.analysis.Analysis`; every snapshot and its verdict is written
to the state store, which is what `conveyor explain` and `conveyor analyze
--replay` read.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from conveyor.analysis import Analysis, AnalysisSpec, Decision, ReleaseStats, Verdict
from conveyor.engine.plan import Analyze
from conveyor.engine.runtime import Runtime
from conveyor.engine.strategies.base import BASELINE, CANARY, STABLE
from conveyor.errors import AnalysisFailedError
from conveyor.routers.base import TrafficStats
from conveyor.sources import MetricSource, read_metrics
from conveyor.store.records import InstanceRecord, MeasurementRecordRow

REPORT_EVERY_S = 5.0  # progress lines while the verdict stays the same

Progress = Callable[[str], None]


def preview_environment(environment: str) -> str:
    """The router environment of an environment's preview listener."""
    return f"{environment}_preview"


def role_of(instance: InstanceRecord, step: Analyze, deployment_id: str) -> str | None:
    """CANARY, BASELINE or STABLE for an instance during `step`; None if it plays no part."""
    if instance.release_id == step.canary:
        return CANARY
    if instance.release_id == step.stable:
        return BASELINE if instance.deployment_id == deployment_id else STABLE
    return None


def _stats(traffic: TrafficStats) -> ReleaseStats:
    return ReleaseStats(traffic.requests, traffic.status_5xx, traffic.latency)


class AnalysisRun:
    """One run of an analysis step; `background` runs restart a window after each verdict."""

    def __init__(
        self,
        rt: Runtime,
        environment: str,
        deployment_id: str,
        step_index: int,
        step: Analyze,
        progress: Progress,
    ) -> None:
        self.rt = rt
        self.environment = environment
        self.deployment_id = deployment_id
        self.step_index = step_index
        self.step = step
        self.progress = progress
        self.spec = AnalysisSpec.from_dict(step.spec)
        self.sources = self._sources()
        self.latest: Verdict | None = None  # the verdict of the latest snapshot

    def _sources(self) -> dict[str, MetricSource]:
        """The custom metrics' sources, from the config: the journaled spec has its
        secrets (headers, URL passwords) redacted."""
        if not self.spec.metrics:
            return {}
        from conveyor.sources import build_sources

        loaded = self.rt.loaded
        template = loaded.config.analysis.get(self.step.name)
        if template is None:
            raise AnalysisFailedError(
                f'analysis "{self.step.name}" is no longer in conveyor.yml; its metrics '
                "cannot be read",
                hint="put it back, or abort the deployment",
            )
        live = AnalysisSpec.from_dict(template.spec_dict(BASELINE))
        return build_sources(live, cwd=loaded.root, env=dict(os.environ))

    async def snapshot(self) -> dict[str, ReleaseStats]:
        """Cumulative counters per role, from the router's data plane."""
        router = self.rt.router_for(self.environment)
        step = self.step
        traffic = dict(await router.traffic_stats(self.environment, step.service))
        if step.preview:
            preview = preview_environment(self.environment)
            for address, stats in (await router.traffic_stats(preview, step.service)).items():
                known = traffic.get(address)
                traffic[address] = stats if known is None else _sum(known, stats)
        roles = {CANARY: ReleaseStats.zero(), BASELINE: ReleaseStats.zero()}
        roles[STABLE] = ReleaseStats.zero()
        for instance in self.rt.store.list_instances(self.environment, step.service):
            role = role_of(instance, step, self.deployment_id)
            seen = traffic.get(instance.address)
            if role is not None and seen is not None:
                roles[role] = roles[role] + _stats(seen)
        return roles

    async def run(self, *, background: bool = False) -> Verdict:
        """Measure until the verdict is final (a background run: until it fails)."""
        store = self.rt.store
        run = store.next_measurement_run(self.deployment_id, self.step_index)
        analysis = Analysis(self.spec)
        wall, mono = time.time(), time.monotonic()
        reported: tuple[Decision, float] | None = None
        while True:
            started = time.monotonic()
            snapshot = await self.snapshot()
            values = await read_metrics(self.sources) if self.sources else None
            verdict = analysis.observe(wall + (time.monotonic() - mono), snapshot, values)
            self.latest = verdict
            record = analysis.records[-1]
            store.add_measurement(
                MeasurementRecordRow(
                    deployment_id=self.deployment_id,
                    step_index=self.step_index,
                    analysis=self.step.name,
                    run=run,
                    seq=record.seq,
                    time=datetime.now(UTC),
                    data=record.to_dict(),
                )
            )
            if (
                reported is None
                or reported[0] != verdict.decision
                or started - reported[1] >= REPORT_EVERY_S
            ):
                self.progress(f"[{self.step.service}] analysis {self.step.name}: {verdict.message}")
                reported = (verdict.decision, started)
            if verdict.final:
                if not background or verdict.decision is Decision.FAIL:
                    return verdict
                # A background analysis watches the whole rollout: start a new window.
                run = store.next_measurement_run(self.deployment_id, self.step_index)
                analysis = Analysis(self.spec)
                continue
            await asyncio.sleep(max(0.0, self.spec.interval - (time.monotonic() - started)))


def _sum(a: TrafficStats, b: TrafficStats) -> TrafficStats:
    latency = a.latency if b.latency is None else b.latency if a.latency is None else None
    if a.latency is not None and b.latency is not None:
        latency = a.latency + b.latency
    return TrafficStats(
        address=a.address,
        requests=a.requests + b.requests,
        status_2xx=a.status_2xx + b.status_2xx,
        status_3xx=a.status_3xx + b.status_3xx,
        status_4xx=a.status_4xx + b.status_4xx,
        status_5xx=a.status_5xx + b.status_5xx,
        latency=latency,
    )
