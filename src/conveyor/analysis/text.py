"""How numbers read in explanations: one place, so that every sentence agrees.

>>> percent(0.048), percent(0.002), percent(0.05), percent(0.00042), percent(0.0)
('4.8%', '0.2%', '5%', '0.042%', '0%')
>>> rate(24, 500), millis(342.4), millis(45.12), millis(40.0), millis(0.35), millis(1250.0)
('4.8% (24/500)', '342 ms', '45.1 ms', '40 ms', '0.35 ms', '1.25 s')
>>> number(152.3), number(12.34), number(1.304), number(0.0421), number(15230.0), number(3e9)
('152', '12.3', '1.3', '0.0421', '15230', '3e+09')
>>> seconds(4.0), seconds(2.5), seconds(90.0), seconds(300.0), seconds(0.0)
('4s', '2.5s', '1m30s', '5m', '0s')
"""

from __future__ import annotations

import math

__all__ = ["millis", "number", "percent", "rate", "seconds"]


def _trim(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


def percent(fraction: float) -> str:
    """A fraction as a percentage: one decimal from 0.1% up, two significant digits below."""
    value = fraction * 100
    if value == 0:
        return "0%"
    if value >= 0.1:
        return _trim(f"{value:.1f}") + "%"
    return f"{value:.2g}%"


def rate(events: int, total: int) -> str:
    """`events` of `total` as "4.8% (24/500)"; "n/a (0/0)" without a total."""
    if total <= 0:
        return f"n/a ({events}/{total})"
    return f"{percent(events / total)} ({events}/{total})"


def millis(value: float) -> str:
    """A latency in milliseconds, with three significant digits at most."""
    if math.isinf(value):
        return "inf"
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return _trim(f"{value:.1f}") + " ms"
    return f"{value:.2g} ms"


def number(value: float) -> str:
    """A statistic (an e-value): three significant digits, no exponent below a million."""
    if math.isinf(value):
        return "inf"
    if value >= 1e6:
        return f"{value:.2g}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def seconds(value: float) -> str:
    """Elapsed seconds as a duration ("4s", "1m30s"), rounded to a tenth of a second."""
    tenths = round(value * 10)
    minutes, tenths = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if tenths or not parts:
        parts.append(_trim(f"{tenths / 10:.1f}") + "s")
    return "".join(parts)
