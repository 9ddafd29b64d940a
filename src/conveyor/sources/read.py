"""Sources from the spec, and one read of them all per analysis interval."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from conveyor.analysis.custom import (
    CommandOutput,
    HttpJson,
    MetricReading,
    PrometheusQuery,
    SourceSpec,
    parse_source,
)
from conveyor.analysis.spec import AnalysisSpec
from conveyor.concurrently import every
from conveyor.sources.base import MetricSource, MetricSourceError
from conveyor.sources.command import CommandSource
from conveyor.sources.http import HttpSource
from conveyor.sources.prometheus import PrometheusSource

__all__ = ["build_sources", "read_metrics", "source_for", "source_from_dict"]


def source_for(
    spec: SourceSpec,
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> MetricSource:
    """The source a parsed source spec describes; `cwd` and `env` are for commands."""
    if isinstance(spec, PrometheusQuery):
        return PrometheusSource.from_spec(spec)
    if isinstance(spec, HttpJson):
        return HttpSource.from_spec(spec)
    if isinstance(spec, CommandOutput):
        return CommandSource.from_spec(spec, cwd=cwd, env=env)
    raise TypeError(f"not a metric source spec: {spec!r}")


def source_from_dict(
    data: Mapping[str, object],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> MetricSource:
    """A source from its plain form; `AnalysisSpecError` (a ValueError) names the bad key.

    `{"prometheus": {"url": ..., "query": ..., "timeout": "5s"}}`,
    `{"http": {"url": ..., "path": "data.error_rate", "headers": {...}, "timeout": "5s"}}`,
    `{"command": "sh text"}`, `{"command": [argv...]}` or
    `{"command": {"run": "sh text" | [argv...], "timeout": "10s"}}`.
    """
    return source_for(parse_source(data), cwd=cwd, env=env)


def build_sources(
    spec: AnalysisSpec,
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, MetricSource]:
    """One source per custom metric of `spec`, by metric name (no I/O)."""
    return {metric.name: source_for(metric.source, cwd=cwd, env=env) for metric in spec.metrics}


async def _read(source: MetricSource) -> MetricReading:
    try:
        return MetricReading(await source.read())
    except MetricSourceError as exc:
        return MetricReading(None, exc.message)
    except Exception as exc:
        # A bug in a source must not stop the analysis: it counts as a failed
        # read, and `error_limit` of them fail the check.
        return MetricReading(None, f"{source!r}: unexpected {type(exc).__name__}: {exc}")


async def read_metrics(
    sources: AnalysisSpec | Mapping[str, MetricSource],
) -> dict[str, MetricReading]:
    """Read every source once, concurrently; never raises for a failing source.

    `sources` is a spec (its sources are built first) or `build_sources`'
    result. Returns metric name -> `MetricReading`: the value, or None and the
    error's message; pass it to `Analysis.observe(time, releases, values)`.
    Takes as long as the slowest source (each has its own timeout).
    """
    if isinstance(sources, AnalysisSpec):
        sources = build_sources(sources)
    readings = await every(*(_read(source) for source in sources.values()))
    return dict(zip(sources, readings, strict=True))
