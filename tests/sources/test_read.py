"""Sources from plain dicts and from a spec; reading them all at once."""

from __future__ import annotations

import asyncio
import doctest
import importlib
from pathlib import Path

import pytest

from conveyor.analysis import (
    Analysis,
    AnalysisSpec,
    AnalysisSpecError,
    Decision,
    MetricReading,
    ReleaseStats,
    replay,
)
from conveyor.sources import (
    CommandSource,
    HttpSource,
    PrometheusSource,
    build_sources,
    read_metrics,
    source_from_dict,
)
from tests.sources.conftest import Route, Server, free_port


def test_source_from_dict() -> None:
    prometheus = source_from_dict(
        {"prometheus": {"url": "http://127.0.0.1:9090", "query": "up", "timeout": "2s"}}
    )
    assert isinstance(prometheus, PrometheusSource)
    assert (prometheus.url, prometheus.query, prometheus.timeout) == (
        "http://127.0.0.1:9090",
        "up",
        2.0,
    )
    http = source_from_dict(
        {"http": {"url": "https://stats.example/x", "path": "a.0", "headers": {"X-Key": "k"}}}
    )
    assert isinstance(http, HttpSource)
    assert (http.path, http.headers, http.timeout) == ("a.0", {"X-Key": "k"}, 5.0)
    shell = source_from_dict({"command": "echo 1"})
    argv = source_from_dict({"command": ["echo", "1"]})
    long = source_from_dict({"command": {"run": "echo 1", "timeout": "500ms"}}, cwd="/tmp")
    assert isinstance(shell, CommandSource) and shell.argv == ["/bin/sh", "-c", "echo 1"]
    assert isinstance(argv, CommandSource) and argv.argv == ["echo", "1"]
    assert isinstance(long, CommandSource) and (long.timeout, long.cwd) == (0.5, "/tmp")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "source: expected exactly one source, prometheus, http or command; got none"),
        (
            {"http": {"url": "http://a"}, "command": "x"},
            "source: expected exactly one source, prometheus, http or command; got http and command",
        ),
        (
            {"prometheus": {"url": "http://a"}},
            "prometheus.query: expected a non-empty string, got None",
        ),
        (
            {"prometheus": {"url": "localhost:9090", "query": "up"}},
            'prometheus.url: expected an http:// or https:// URL, got "localhost:9090"',
        ),
        (
            {"prometheus": {"url": "http://a", "query": "up", "timout": "1s"}},
            'prometheus: unknown key "timout" (did you mean "timeout"?); expected url, query, timeout',
        ),
        (
            {"http": {"url": "http://a", "timeout": "soon"}},
            'http.timeout: expected a duration like "5s", got "soon"',
        ),
        (
            {"http": {"url": "http://a", "path": "a..b"}},
            'http.path: expected keys and indexes separated by dots, like "data.error_rate" or "items.0.value", got "a..b"',
        ),
        (
            {"http": {"url": "http://a", "headers": {"X-Key": "caf\u00e9"}}},
            "http.headers.X-Key: expected a line of printable ASCII",
        ),
        (
            {"command": []},
            "command.run: expected a command string or a non-empty list of arguments",
        ),
        ({"command": {"run": "x", "timeout": 0}}, "command.timeout: expected a duration above 0s"),
        (
            {"command": 7},
            "command: expected a command string, an argv list or a mapping with run (and"
            " timeout), got 7",
        ),
    ],
)
def test_bad_source_dicts(data: dict[str, object], message: str) -> None:
    with pytest.raises(AnalysisSpecError) as caught:
        source_from_dict(data)
    assert str(caught.value) == message


def test_read_metrics_reads_concurrently_and_never_raises(
    http_server: Server, tmp_path: Path
) -> None:
    http_server.routes["/stats"] = Route.json({"rate": 0.5})
    down = f"http://127.0.0.1:{free_port()}"

    def together(me: str, *others: str) -> str:
        """Mark `me` as started, then wait until `others` have been too (or give up)."""
        started = " && ".join(f"[ -e {tmp_path}/{other} ]" for other in others)
        return (
            f"touch {tmp_path}/{me}; i=0; until {started}; do i=$((i + 1)); "
            "[ $i -gt 200 ] && exit 3; sleep 0.1; done; "
        )

    spec = AnalysisSpec.from_dict(
        {
            "metrics": [
                # Each waits (up to 20 s) until the other two have started: read one
                # after the other, the first would give up and fail.
                {"name": "a", "command": together("a", "b", "c") + "echo 1", "condition": "< 5"},
                {"name": "b", "command": together("b", "a", "c") + "echo 2", "condition": "< 5"},
                {"name": "c", "command": together("c", "a", "b") + "exit 1", "condition": "< 5"},
                {
                    "name": "d",
                    "http": {"url": f"{http_server.base}/stats", "path": "rate"},
                    "condition": "< 5",
                },
                {"name": "e", "prometheus": {"url": down, "query": "up"}, "condition": "< 5"},
            ]
        }
    )
    sources = build_sources(spec)
    assert list(sources) == ["a", "b", "c", "d", "e"]
    readings = asyncio.run(read_metrics(sources))
    failed = readings.pop("c")
    # The command is shortened in the message (how much depends on tmp_path's length).
    assert failed.value is None and str(failed.error).startswith('command "touch /')
    assert str(failed.error).endswith('": exit 1, nothing on stderr')  # not 3: it gave up
    assert readings == {
        "a": MetricReading(1.0),
        "b": MetricReading(2.0),
        "d": MetricReading(0.5),
        "e": MetricReading(None, f'prometheus {down} query "up": connection refused'),
    }
    assert asyncio.run(read_metrics(AnalysisSpec())) == {}


def test_an_analysis_fed_by_commands_is_recorded_and_replayed(tmp_path: object) -> None:
    spec = AnalysisSpec.from_dict(
        {
            "comparative": False,
            "min_requests": 1,
            "duration": "2s",
            "metrics": [
                {
                    "name": "queue_depth",
                    "command": "echo 30",
                    "condition": "< 20",
                    "failure_limit": 2,
                },
                {"name": "disk_free", "command": "echo nope", "condition": "> 1"},
            ],
        }
    )
    sources = build_sources(spec)
    analysis = Analysis(spec)
    for second in range(4):
        values = asyncio.run(read_metrics(sources))
        verdict = analysis.observe(float(second), {"canary": ReleaseStats(10 * second, 0)}, values)
    assert verdict.decision is Decision.FAIL
    assert verdict.message == (
        "FAIL after 2s: queue_depth 30 (command); condition < 20: FAIL (failed 2 times in a row,"
        " failure_limit 2)"
    )
    assert verdict.checks[1].message == (
        'disk_free read failed: command "echo nope": last line of stdout: expected a number, got'
        ' "nope"; condition > 1: PENDING (2 of error_limit 4 failed reads in a row)'
    )
    records = [record.to_dict() for record in analysis.records]
    assert records[1]["metrics"] == {"queue_depth": 30.0, "disk_free": None}
    again = replay(records, ["queue_depth<50", "disk_free=off"])
    assert again.verdict.decision is Decision.PASS


@pytest.mark.parametrize("name", ["http", "read", "base", "command", "prometheus", "process"])
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"conveyor.sources.{name}")
    failures, _ = doctest.testmod(module)
    assert failures == 0
