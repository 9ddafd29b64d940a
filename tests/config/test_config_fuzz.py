"""Fuzz the config loader: near-valid conveyor.yml files give a config or a ConfigError,
never a traceback, and none takes over 5 s or 200 MB (issue 13, section 6).

The cases are mutations of a valid config that uses every section: values replaced
by odd types, huge numbers, non-ASCII digits, empty values, deep nesting; keys
dropped, renamed or added; and some text-level damage (aliases, truncation, tabs).
The run is derandomized, so CI sees the same 1,000+ cases every time.
"""

from __future__ import annotations

import os
import re
import resource
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.config import load_config
from conveyor.config.limits import MAX_VALUES
from conveyor.errors import ConfigError

SEED = """\
project: shop
releases: {keep: 5}
ports: 20000-29999
x-env: &env {GREETING: hello}
services:
  api:
    source: api
    include: [faults.json]
    exclude: ["tests/", "*.md"]
    dependencies:
      paths: [.venv]
      files: [requirements.txt]
      install: [[python3, -m, venv, .venv]]
    build: [python3 -m compileall -q ., [pip, install, -r, requirements.txt]]
    writable: [cache]
    run: [python3, server.py]
    env: {<<: *env, WORKERS: 4, DEBUG: false, DB: "${DB_URL:-sqlite:///x.db}"}
    replicas: ${API_REPLICAS:-2}
    route: {path: /api, strip_prefix: true}
    health: {type: http, path: /health, interval: 200ms, timeout: 2s, healthy_threshold: 2}
    stop_timeout: 10s
    drain_timeout: 30s
    deploy_timeout: 1m30s
    smoke: [{path: /api/ping}, {name: cli, command: "curl -f $SMOKE_URL"}]
    migrate:
      command: python3 manage.py migrate
      database: main
      sql_preview: {directory: migrations}
  web:
    run: python3 web.py
    route: {host: shop.example.com}
    health: {type: command, command: [true]}
databases:
  main:
    url: sqlite:///main.db
    backup: {keep: 3, verify: read}
analysis:
  errors:
    interval: 1s
    duration: 5s
    thresholds: ["error_rate < 2%", "p95 < 500ms"]
pipeline:
  parallel: 2
  jobs:
    lint: {run: [ruff, check], reports: [{sarif: lint.sarif, fail_on: medium}]}
    test: {needs: [lint], run: pytest, retries: 1, reports: [{junit: junit.xml}]}
groups: {sre: [ann, bob]}
hooks: {pre_deploy: [./check.sh], timeout: 1m}
notify:
  - webhook: {url: "https://hooks.example.com/x", secret: "${HOOK_SECRET:-s}"}
    events: [failed]
environments:
  staging:
    listen: 127.0.0.1:8080
    strategy: {type: rolling, max_surge: 25%, max_unavailable: 0, min_ready: 1s}
    env: {LOG_LEVEL: debug}
    services: {api: {replicas: 1}}
  production:
    listen: 127.0.0.1:8090
    promote_from: staging
    require_pipeline: true
    branches: [main]
    windows: [{days: [mon, tue], start: "09:00", end: "17:00", timezone: Europe/Berlin}]
    freeze: [{from: 2024-12-20, to: 2025-01-02, reason: holidays}]
    approvals: {required: 1, approvers: ["@sre"], expires: 1h}
    strategy:
      type: canary
      steps: [{set_weight: 20}, {analysis: errors}, {pause: 5s}, {set_weight: 50}, {pause: {}}]
      rollback_window: 10m
    databases: {main: {url: "postgresql://u:p@127.0.0.1:5432/shop"}}
  preview:
    listen: 127.0.0.1:8100
    strategy: {type: blue_green, preview: "127.0.0.1:8101", auto_promote: false}
"""

VALID = yaml.safe_load(SEED)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# Values a person (or a template gone wrong) might put anywhere.
ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\u0665s",  # Arabic-Indic five
        "\u0661\u0660",
        "\u00b2",  # superscript two: isdigit() but not int()
        "1e999",
        "nan",
        "inf",
        "-1",
        "99999999999999999999h",
        "0s",
        "200%",
        "-5%",
        "../../etc",
        "/etc/passwd",
        "~/x",
        "${UNSET}",
        "${",
        "$${X}",
        "${A:-${B}}",
        "a" * 300,
        "9" * 5000,
        "9" * 5000 + "%",
        "x-",
        "\0",
        "a\nb",
        "\t",
        "0x10",
        "1_000",
        "2024-02-30",
        "yes",
        "null",
        "[]",
        "{}",
        "127.0.0.1:99999",
        "[::1]:8080",
        "65536-1",
        "\ud7ff" * 3,
    ]
)
HUGE_NUMBERS = st.sampled_from([10**20, -(10**20), 2**63, 10**4000, 1e308, -0.0, 0.5])
SCALARS = st.one_of(
    ODD_TEXT,
    HUGE_NUMBERS,
    st.integers(-(10**6), 10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=40),
    st.dates(),
)


# Scalars as YAML text, where the YAML reader itself has to cope.
RAW_SCALARS = st.sampled_from(
    [
        "2024-02-30",
        "2024-13-01",
        "!!timestamp 2024-02-30",
        "1" + "0" * 5000,
        "0x" + "f" * 5000,
        "1:20:30",
        "0o777",
        ".nan",
        "-.inf",
        "1e400",
        "~",
        "&loop [*loop]",
        "&loop {a: *loop}",
        "*undefined",
        "!!python/object/apply:os.system [true]",
        "!!binary AAAA",
        "!!set {a, b}",
        "!!omap [a: 1]",
        "? [a]\n  : 1",
        "{[a]: 1}",
        "|\n  text",
        "'unterminated",
        "[" * 40 + "]" * 40,
    ]
)


def nested(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


ODD_VALUES = st.one_of(
    SCALARS,
    st.just([]),
    st.just({}),
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
    st.integers(20, 200).map(nested),
    st.integers(1, 2000).map(lambda n: ["x"] * n),
)


def paths(value: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of `value` (containers and leaves), the root excluded."""
    found = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        found.append((*where, key))
        found.extend(paths(child, (*where, key)))
    return found


ALL_PATHS = paths(VALID)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    data = _copy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(ALL_PATHS))
        parent: Any = data
        for key in where[:-1]:
            try:
                parent = parent[key]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if not isinstance(parent, dict | list):
            continue
        key = where[-1]
        if isinstance(parent, list) and not (isinstance(key, int) and key < len(parent)):
            continue
        if isinstance(parent, dict) and key not in parent:
            continue
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "rename", "add"]))
        if action == "replace":
            parent[key] = draw(ODD_VALUES)
        elif action == "drop":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(ODD_TEXT | st.text(max_size=10))] = parent.pop(key)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(ODD_TEXT | st.text(max_size=10))] = draw(ODD_VALUES)
    try:
        text = yaml.dump(data, Dumper=_DUMPER, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, RecursionError):
        text = SEED
    damage = draw(
        st.sampled_from(["none", "none", "truncate", "tab", "alias", "bytes", "scalar", "scalar"])
    )
    if damage == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == "tab":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + "\t" + text[at:]
    elif damage == "alias":
        levels = draw(st.integers(1, 12))
        anchors = "x-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
            f"x-a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]\n" for n in range(1, levels)
        )
        text = anchors + text.replace("exclude:", f"exclude: *a{levels - 1}\n    x-was:", 1)
    elif damage == "scalar":  # YAML written as is: what a dump of Python values never gives
        values = [m.end() for m in re.finditer(r": ", text)]
        if values:
            at = draw(st.sampled_from(values))
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            text = text[:at] + draw(RAW_SCALARS) + text[end:]
    elif damage == "bytes":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(min_size=1, max_size=20)) + text[at:]
    return text


@dataclass
class Figures:
    cases: int = 0
    accepted: int = 0
    refused: int = 0
    tracebacks: list[str] = field(default_factory=list)
    slowest: float = 0.0
    slowest_text: str = ""
    peak_bytes: int = 0


LIMIT_SECONDS = 5.0
LIMIT_BYTES = 200 * 1024 * 1024
CASES = int(os.environ.get("FUZZ_CASES", "1000"))


def test_config_loader_fuzz(tmp_path: Path, record_property: Any) -> None:
    figures = Figures()
    config = tmp_path / "conveyor.yml"
    environ = {"API_REPLICAS": "3"}

    @settings(
        max_examples=CASES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(near_valid())
    def case(text: str) -> None:
        figures.cases += 1
        config.write_text(text, encoding="utf-8", errors="surrogatepass")
        tracemalloc.start()  # only around the load: tracing slows everything down
        started = time.perf_counter()
        try:
            load_config(config, environ=environ)
            figures.accepted += 1
        except ConfigError:
            figures.refused += 1
        except Exception as exc:
            figures.tracebacks.append(f"{type(exc).__name__}: {exc}\n{text[:2000]}")
        finally:
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if elapsed > figures.slowest:
                figures.slowest, figures.slowest_text = elapsed, text
            figures.peak_bytes = max(figures.peak_bytes, peak)

    case()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    summary = (
        f"config fuzz: {figures.cases} cases, {figures.accepted} accepted, "
        f"{figures.refused} refused, {len(figures.tracebacks)} tracebacks, slowest "
        f"{figures.slowest:.3f} s, peak traced memory {figures.peak_bytes / 2**20:.1f} MiB "
        f"(process max RSS {rss / 2**20:.0f} MiB)"
    )
    print(summary)
    print("slowest case:", figures.slowest_text[:300])
    record_property("config_fuzz", summary)
    assert not figures.tracebacks, "\n\n".join(figures.tracebacks[:3])
    assert figures.cases >= CASES
    assert figures.slowest < LIMIT_SECONDS
    assert figures.peak_bytes < LIMIT_BYTES
    assert figures.refused and figures.accepted  # the mutations are near, not far


@pytest.mark.parametrize("levels", [3, 6, 9])
def test_alias_damage_reaches_a_real_key(tmp_path: Path, levels: int) -> None:
    """The fuzz's alias damage is a real bomb under services/api/exclude, not an x- key."""
    anchors = "x-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"x-a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]\n" for n in range(1, levels)
    )
    config = tmp_path / "conveyor.yml"
    config.write_text(anchors + SEED.replace("exclude:", f"exclude: *a{levels - 1}\n    x-was:", 1))
    if 9**levels > MAX_VALUES:
        with pytest.raises(ConfigError, match="services/api/exclude: YAML aliases"):
            load_config(config, environ={})
    else:
        with pytest.raises(ConfigError, match="services/api/exclude/0: expected a string"):
            load_config(config, environ={})
