"""The canary analysis as a chart: inline SVG, drawn on the server from the journal.

Each analysis run journals one measurement per tick (`conveyor.engine.analysis_run`):
the cumulative counters of the canary, the baseline and the stable release, and the
verdict with each judge's statistic (the comparisons' e-value and the level at which
they reject). `series` turns those into what the judges saw at each tick - counts
since the run's first measurement - and `svg` draws three panels: error rate and
p95 latency of the canary against the release it is compared with, and each
comparison's e-value (log scale) against its threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from conveyor.analysis.metrics import ReleaseStats

CANARY = "canary"
WIDTH, PANEL_HEIGHT, LEFT, RIGHT, TOP, GAP = 640, 120, 64, 16, 18, 34
COLOURS = {"canary": "#d9480f", "other": "#1c7ed6", "threshold": "#868e96"}
E_COLOURS = ("#7048e8", "#2b8a3e", "#e8590c", "#0b7285")


@dataclass(frozen=True)
class Point:
    """What the judges saw at one tick, counted since the run's first measurement."""

    elapsed: float  # seconds since the run's first measurement
    canary_error_rate: float | None
    other_error_rate: float | None
    canary_p95_ms: float | None
    other_p95_ms: float | None
    e_values: dict[str, float | None] = field(default_factory=dict)  # judge -> e-value
    decision: str = "CONTINUE"


@dataclass(frozen=True)
class Series:
    """One analysis run's points, the release it compares with, and the e-value limits."""

    analysis: str
    run: int
    step: int
    against: str  # "baseline" or "stable"
    points: tuple[Point, ...]
    reject_at: dict[str, float]  # judge -> the e-value at which it fails
    decision: str
    message: str


def _against(spec: dict[str, Any] | None, records: Sequence[dict[str, Any]]) -> str:
    for record in records:
        for check in record.get("verdict", {}).get("checks", []):
            against = (check.get("threshold") or {}).get("against")
            if isinstance(against, str):
                return against
    comparative = (spec or {}).get("comparative") or {}
    against = comparative.get("against") if isinstance(comparative, dict) else None
    if isinstance(against, str):
        return against
    # thresholds only: show the canary beside the baseline when one took traffic
    first = records[0].get("releases", {}) if records else {}
    return "baseline" if (first.get("baseline") or {}).get("requests") else "stable"


def _stats(record: dict[str, Any], role: str) -> ReleaseStats:
    data = record.get("releases", {}).get(role)
    return ReleaseStats.zero() if not data else ReleaseStats.from_dict(data)


def _p95(stats: ReleaseStats) -> float | None:
    return None if stats.latency is None or not stats.requests else stats.latency.quantile(0.95)


def series(
    analysis: str, run: int, step: int, spec: dict[str, Any] | None, records: list[dict[str, Any]]
) -> Series:
    """The chart's data of one analysis run (its measurements' `to_dict()`, in order)."""
    against = _against(spec, records)
    points: list[Point] = []
    reject_at: dict[str, float] = {}
    first = records[0] if records else {}
    start_canary, start_other = _stats(first, CANARY), _stats(first, against)
    start_time = float(first.get("time", 0.0)) if first else 0.0
    for record in records:
        canary = _stats(record, CANARY).since(start_canary)
        other = _stats(record, against).since(start_other)
        e_values: dict[str, float | None] = {}
        verdict = record.get("verdict", {})
        for check in verdict.get("checks", []):
            if check.get("statistic") != "e_value":
                continue
            value = check.get("value")
            e_values[check["name"]] = None if value is None else float(value)
            limit = (check.get("threshold") or {}).get("reject_at")
            if isinstance(limit, int | float):
                reject_at[check["name"]] = float(limit)
        points.append(
            Point(
                elapsed=float(record.get("time", start_time)) - start_time,
                canary_error_rate=canary.error_rate,
                other_error_rate=other.error_rate,
                canary_p95_ms=_p95(canary),
                other_p95_ms=_p95(other),
                e_values=e_values,
                decision=str(verdict.get("decision", "CONTINUE")),
            )
        )
    last = records[-1].get("verdict", {}) if records else {}
    return Series(
        analysis=analysis,
        run=run,
        step=step,
        against=against,
        points=tuple(points),
        reject_at=reject_at,
        decision=str(last.get("decision", "CONTINUE")),
        message=str(last.get("message", "")),
    )


def series_of_analyses(analyses: list[dict[str, Any]]) -> list[Series]:
    """Every analysis run, as `conveyor explain --json` lists them under "analyses"."""
    return [
        series(a["analysis"], a["run"], a["step"], a.get("spec"), a["measurements"])
        for a in analyses
        if a["measurements"]
    ]


# -- drawing ----------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _nice_max(value: float) -> float:
    """A round upper bound for an axis (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


@dataclass(frozen=True)
class _Panel:
    top: float
    x_max: float
    y_min: float
    y_max: float
    log: bool = False

    def x(self, elapsed: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (elapsed / self.x_max if self.x_max else 0.0)

    def y(self, value: float) -> float:
        lo, hi = self.y_min, self.y_max
        if self.log:
            value, lo, hi = (math.log10(max(value, 10**lo)), lo, hi)
        share = 0.0 if hi == lo else (min(max(value, lo), hi) - lo) / (hi - lo)
        return self.top + PANEL_HEIGHT * (1 - share)


def _polyline(
    panel: _Panel, xs: Sequence[float], ys: Sequence[float | None], colour: str, label: str
) -> str:
    """A line through the points that have a value (a gap where none has), and a dot on
    the latest one (a lone point shows too)."""
    parts: list[str] = []
    run: list[str] = []
    last: str | None = None
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            if run:
                parts.append(" ".join(run))
            run = []
            continue
        last = f'cx="{panel.x(x):.1f}" cy="{panel.y(y):.1f}"'
        run.append(f"{panel.x(x):.1f},{panel.y(y):.1f}")
    if run:
        parts.append(" ".join(run))
    lines = "".join(
        f'<polyline class="line" data-series="{escape(label)}" points="{points}" fill="none" '
        f'stroke="{colour}" stroke-width="2"/>'
        for points in parts
    )
    dot = f'<circle {last} r="3" fill="{colour}"/>' if last else ""
    return lines + dot


def _frame(panel: _Panel, title: str, ticks: Sequence[tuple[float, str]]) -> str:
    bottom = panel.top + PANEL_HEIGHT
    out = [
        f'<text x="{LEFT}" y="{panel.top - 5:.0f}" class="title" font-size="12" '
        f'font-weight="600">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{panel.top}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{PANEL_HEIGHT}" fill="none" stroke="#dee2e6"/>',
    ]
    for value, text in ticks:
        y = panel.y(value)
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#f1f3f5"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10" '
            f'fill="#495057">{escape(text)}</text>'
        )
    out.append(
        f'<text x="{WIDTH - RIGHT}" y="{bottom + 12:.0f}" text-anchor="end" font-size="10" '
        f'fill="#495057">{_fmt(panel.x_max)} s</text>'
        f'<text x="{LEFT}" y="{bottom + 12:.0f}" font-size="10" fill="#495057">0 s</text>'
    )
    return "".join(out)


def _legend(y: float, items: Sequence[tuple[str, str]]) -> str:
    out, x = [], LEFT
    for colour, text in items:
        out.append(
            f'<rect x="{x}" y="{y - 8:.0f}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{y + 1:.0f}" font-size="11">{escape(text)}</text>'
        )
        x += 24 + 7 * len(text)
    return "".join(out)


def svg(data: Series) -> str:
    """The chart of one analysis run: error rate, p95 latency and e-values over time."""
    points = data.points
    xs = [p.elapsed for p in points]
    x_max = _nice_max(max(xs, default=0.0)) if any(xs) else 1.0
    height = TOP + 3 * (PANEL_HEIGHT + GAP) + 8
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" '
        f'aria-label="analysis {escape(data.analysis)}, run {data.run}: '
        f'{escape(data.decision)}" data-points="{len(points)}" '
        f'data-decision="{escape(data.decision)}">'
    ]
    other = data.against
    # error rate, %
    rates = [v for p in points for v in (p.canary_error_rate, p.other_error_rate) if v is not None]
    top = _nice_max(100 * max(rates, default=0.0)) if any(rates) else 1.0
    panel = _Panel(TOP, x_max, 0.0, top)
    out.append(
        _frame(
            panel,
            "error rate (5xx)",
            [(0, "0 %"), (top / 2, f"{_fmt(top / 2)} %"), (top, f"{_fmt(top)} %")],
        )
    )
    for label, colour, values in (
        (CANARY, COLOURS["canary"], [p.canary_error_rate for p in points]),
        (other, COLOURS["other"], [p.other_error_rate for p in points]),
    ):
        scaled = [None if v is None else 100 * v for v in values]
        out.append(_polyline(panel, xs, scaled, colour, f"error_rate:{label}"))
    # p95 latency, ms
    lat = [v for p in points for v in (p.canary_p95_ms, p.other_p95_ms) if v is not None]
    top = _nice_max(max(lat, default=0.0)) if lat else 1.0
    panel = _Panel(TOP + PANEL_HEIGHT + GAP, x_max, 0.0, top)
    out.append(
        _frame(
            panel,
            "p95 latency",
            [(0, "0 ms"), (top / 2, f"{_fmt(top / 2)} ms"), (top, f"{_fmt(top)} ms")],
        )
    )
    out.append(
        _polyline(panel, xs, [p.canary_p95_ms for p in points], COLOURS["canary"], f"p95:{CANARY}")
    )
    out.append(
        _polyline(panel, xs, [p.other_p95_ms for p in points], COLOURS["other"], f"p95:{other}")
    )
    # e-values, log scale, against the level at which each comparison fails
    judges = sorted({name for p in points for name in p.e_values} | set(data.reject_at))
    e_top = TOP + 2 * (PANEL_HEIGHT + GAP)
    if judges:
        seen = [v for p in points for v in p.e_values.values() if v is not None and v > 0]
        hi = math.log10(max([*seen, *data.reject_at.values(), 10.0])) + 0.3
        lo = min(-1.0, math.log10(min(seen, default=1.0)) - 0.3)
        panel = _Panel(e_top, x_max, lo, hi, log=True)
        ticks = [
            (10.0**k, _fmt(10.0**k) if k >= 0 else f"1e{k}")
            for k in range(math.ceil(lo), math.floor(hi) + 1)
        ]
        out.append(_frame(panel, "e-value (log) against its threshold", ticks))
        for i, judge in enumerate(judges):
            colour = E_COLOURS[i % len(E_COLOURS)]
            limit = data.reject_at.get(judge)
            if limit is not None:
                y = panel.y(limit)
                out.append(
                    f'<line class="threshold" data-series="threshold:{escape(judge)}" '
                    f'x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="{colour}" stroke-dasharray="5 4"/>'
                    f'<text x="{WIDTH - RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end" '
                    f'font-size="10" fill="{colour}">fails at {_fmt(limit)}</text>'
                )
            values = [p.e_values.get(judge) for p in points]
            out.append(_polyline(panel, xs, values, colour, f"e_value:{judge}"))
        legend = [(E_COLOURS[i % len(E_COLOURS)], j) for i, j in enumerate(judges)]
    else:
        out.append(
            f'<text x="{LEFT}" y="{e_top + 20}" font-size="12" fill="#495057">'
            "No comparison configured (thresholds only): no e-value to draw.</text>"
        )
        legend = []
    legend_y = height - 2
    out.append(_legend(legend_y, [(COLOURS["canary"], CANARY), (COLOURS["other"], other), *legend]))
    out.append("</svg>")
    return "".join(out)
