"""The pipeline runner with real commands: the DAG's order and parallelism, failures that
skip their dependents, retries, timeouts, reports as gates, logs."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.config.models import PipelineConfig
from conveyor.pipeline.graph import blocked_by, graph_issues, ready
from conveyor.pipeline.runner import PipelineRunner

PY = sys.executable


def stamp(name: str, seconds: float = 0.3, code: int = 0) -> list[str]:
    """A job that records when it started and ended (monotonic clock) in stamps/<name>."""
    return [
        PY,
        "-c",
        "import sys, time, pathlib; p = pathlib.Path('stamps'); p.mkdir(exist_ok=True); "
        f"s = time.monotonic(); time.sleep({seconds}); "
        f"(p / '{name}').write_text(f'{{s}} {{time.monotonic()}}'); sys.exit({code})",
    ]


def meet(name: str, group: list[str]) -> list[str]:
    """Like `stamp(name)`, but the job ends once every job of `group` has started: it waits
    up to 30 s for the others, then fails, so the group passes only if its jobs run side
    by side (whatever the load, which only delays their meeting)."""
    return [
        PY,
        "-c",
        "import pathlib, sys, time; p = pathlib.Path('stamps'); p.mkdir(exist_ok=True); "
        "here = pathlib.Path('here'); here.mkdir(exist_ok=True); "
        # the start is taken before the others can see it: each ends after every start
        f"s = time.monotonic(); (here / '{name}').touch(); deadline = s + 30\n"
        f"while not all((here / n).exists() for n in {group!r}):\n"
        "    if time.monotonic() > deadline: sys.exit('alone')\n"
        "    time.sleep(0.02)\n"
        f"(p / '{name}').write_text(f'{{s}} {{time.monotonic()}}')\n",
    ]


def spans(root: Path) -> dict[str, tuple[float, float]]:
    out = {}
    for path in (root / "stamps").iterdir():
        start, end = path.read_text().split()
        out[path.name] = (float(start), float(end))
    return out


def run(config: dict[str, Any], root: Path) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    runner = PipelineRunner(
        PipelineConfig.model_validate(config),
        root,
        root / "logs",
        on_change=lambda r: changes.append((r.name, r.status)),
    )
    results = asyncio.run(runner.run())
    return {n: r.to_dict() for n, r in results.items()}, changes


def test_jobs_run_in_parallel_as_far_as_their_needs_allow(tmp_path: Path) -> None:
    free = ["lint", "format", "audit"]  # they wait for each other: one at a time, they fail
    jobs = {
        "lint": {"run": meet("lint", free)},
        "format": {"run": meet("format", free)},
        "test": {"run": stamp("test"), "needs": ["lint"]},
        "audit": {"run": meet("audit", free)},
        "build": {"run": stamp("build"), "needs": ["test", "format", "audit"]},
    }
    results, _ = run({"jobs": jobs, "parallel": 3}, tmp_path)
    assert {n: r["status"] for n, r in results.items()} == dict.fromkeys(jobs, "passed")
    s = spans(tmp_path)
    for job, config in jobs.items():
        for need in config.get("needs", []):
            assert s[need][1] <= s[job][0], f"{job} started before {need} ended"
    # the three free jobs ran side by side (parallel: 3), not one after the other: they met
    assert max(s[j][0] for j in free) <= min(s[j][1] for j in free)
    assert max(s[j][1] for j in ("lint", "format", "audit")) <= s["build"][0]


def test_parallel_caps_how_many_run_at_once(tmp_path: Path) -> None:
    jobs = {f"j{n}": {"run": stamp(f"j{n}", 0.3)} for n in range(4)}
    run({"jobs": jobs, "parallel": 2}, tmp_path)
    s = spans(tmp_path)
    for t in (start + 0.05 for start, _ in s.values()):
        assert sum(start <= t < end for start, end in s.values()) <= 2


def test_a_failed_job_skips_what_needs_it_and_nothing_else(tmp_path: Path) -> None:
    jobs = {
        "lint": {"run": stamp("lint", 0.1, code=3)},
        "test": {"run": stamp("test", 0.1), "needs": ["lint"]},
        "build": {"run": stamp("build", 0.1), "needs": ["test"]},
        "docs": {"run": stamp("docs", 0.1)},
    }
    results, changes = run({"jobs": jobs}, tmp_path)
    assert results["lint"]["status"] == "failed" and results["lint"]["reason"] == "exited 3"
    assert results["test"]["status"] == "skipped" and results["test"]["reason"] == (
        "needs lint, which failed"
    )
    assert results["build"]["status"] == "skipped" and results["build"]["reason"] == (
        "needs lint, which failed"
    )
    assert results["docs"]["status"] == "passed"
    assert sorted(spans(tmp_path)) == ["docs", "lint"]  # the skipped ones never ran
    assert ("test", "skipped") in changes


def test_retries_then_pass_and_the_log_keeps_every_attempt(tmp_path: Path) -> None:
    flaky = [
        PY,
        "-c",
        "import pathlib, sys; p = pathlib.Path('tries'); n = len(p.read_text()) "
        "if p.exists() else 0; p.write_text('x' * (n + 1)); print('try', n + 1); "
        "sys.exit(0 if n >= 2 else 1)",
    ]
    results, _ = run({"jobs": {"flaky": {"run": flaky, "retries": 2}}}, tmp_path)
    assert results["flaky"]["status"] == "passed" and results["flaky"]["attempts"] == 3
    log = Path(results["flaky"]["log"]).read_text()
    assert [line.split(":")[0] for line in log.splitlines() if line.endswith("else 1)")] == [
        "--- attempt 1",
        "--- attempt 2",
        "--- attempt 3",
    ]
    assert "--- attempt 2 failed: exited 1" in log
    assert "try 3" in log


def test_a_timeout_kills_the_job_and_its_children(tmp_path: Path) -> None:
    started = time.monotonic()
    command = 'sleep 60 & sleep 60; echo n""ever'  # the log's header shows it as typed
    results, _ = run({"jobs": {"slow": {"run": command, "timeout": "500ms"}}}, tmp_path)
    assert time.monotonic() - started < 15  # not the minute of the sleeps
    assert results["slow"]["status"] == "failed"
    assert results["slow"]["reason"] == "timed out after 0.5 s"
    assert "never" not in Path(results["slow"]["log"]).read_text()


def test_a_report_gate_fails_the_job_even_when_the_command_passes(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    coverage = '<?xml version="1.0" ?><coverage line-rate="0.61" lines-valid="100"></coverage>'
    write = [PY, "-c", f"open('coverage.xml', 'w').write({coverage!r})"]
    job = {
        "run": write,
        "workdir": "api",
        "reports": [{"cobertura": "coverage.xml", "min_coverage": "80%"}],
    }
    missing = {"run": "true", "reports": [{"junit": "junit.xml"}]}
    results, _ = run({"jobs": {"cover": job, "tests": missing}}, tmp_path)
    assert results["cover"]["status"] == "failed"
    assert "line coverage 61.0% (below the minimum 80%)" in results["cover"]["reason"]
    assert results["cover"]["reports"][0]["figures"]["line_rate"] == 0.61
    assert results["tests"]["status"] == "failed"
    assert results["tests"]["reason"].endswith("junit.xml was not written")


def test_jobs_get_their_env_and_run_in_their_workdir(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    probe = [
        PY,
        "-c",
        "import os; open('seen', 'w').write(os.environ['GREETING'] + ' ' + "
        "os.environ['CONVEYOR_JOB'] + ' ' + os.getcwd())",
    ]
    run({"jobs": {"probe": {"run": probe, "workdir": "web", "env": {"GREETING": "hi"}}}}, tmp_path)
    assert (tmp_path / "web" / "seen").read_text() == f"hi probe {tmp_path / 'web'}"


@pytest.mark.parametrize(
    ("needs", "issues"),
    [
        ({"a": [], "b": ["a"]}, []),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a cycle: a -> b -> c -> a"]),
        ({"a": ["a"]}, ["a cycle: a -> a"]),
        ({"a": ["x"]}, ['a needs "x", which is not a job']),
    ],
)
def test_graph_issues(needs: dict[str, list[str]], issues: list[str]) -> None:
    assert graph_issues(needs) == issues


def test_ready_and_blocked_follow_the_graph() -> None:
    needs = {"lint": [], "unit": ["lint"], "e2e": ["unit"], "docs": [], "build": ["e2e", "docs"]}
    assert ready(needs, set(), set()) == ["lint", "docs"]
    assert ready(needs, {"lint"}, {"lint", "docs"}) == ["unit"]
    assert blocked_by(needs, {"unit"}) == {"e2e": "unit", "build": "unit"}
