"""conveyor.sources: read custom metrics for the canary analysis (the I/O half).

`conveyor.analysis` describes each custom metric (`MetricCheck`: a source
and a condition) and judges readings; this package reads them: a Prometheus
instant query, an HTTP endpoint returning JSON, or a command's output. Each
source's `read()` returns a float or raises `MetricSourceError` with a
message for people. The engine builds the sources once and reads them all
at every analysis interval:

    sources = build_sources(spec)                      # no I/O
    values = await read_metrics(sources)               # {name: MetricReading}
    verdict = analysis.observe(now, releases, values)
"""

from __future__ import annotations

from conveyor.sources.base import MetricSource, MetricSourceError, parse_reading
from conveyor.sources.command import CommandSource
from conveyor.sources.http import HttpSource, json_path
from conveyor.sources.process import Finished, run_process
from conveyor.sources.prometheus import PrometheusSource
from conveyor.sources.read import build_sources, read_metrics, source_for, source_from_dict

__all__ = [
    "CommandSource",
    "Finished",
    "HttpSource",
    "MetricSource",
    "MetricSourceError",
    "PrometheusSource",
    "build_sources",
    "json_path",
    "parse_reading",
    "read_metrics",
    "run_process",
    "source_for",
    "source_from_dict",
]
