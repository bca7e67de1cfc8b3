"""Deliveries per minute as an SVG drawn on the server: succeeded and failed stacked, one bar per minute.

The bars live in an inner SVG whose coordinates are minutes and deliveries, stretched to any width; the labels sit
in the outer SVG at percentage positions, so they keep their size on a phone and on a wide screen. Each outcome is
one <path>, so a day of 1,440 minutes stays a few kilobytes. Colours come from classes in dashboard.css (the CSP
allows no inline style)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from herald.db.minutes import Minute

HEIGHT = 180
TOP, PLOT = 8, 148  # px: the plot's top and height; the time labels go below it
LEFT = 7.0  # % of the width kept for the count labels


@dataclass(frozen=True, slots=True)
class Chart:
    svg: str
    succeeded: int
    failed: int


def _nice(value: int) -> int:
    """A round axis maximum at or above `value`."""
    if value <= 4:
        return 4
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * magnitude >= value:
            return int(step * magnitude)
    return value


def _x(i: float, n: int) -> str:
    return f"{LEFT + (100 - LEFT) * i / max(n, 1):.3f}%"


def draw(series: list[Minute], label: str) -> Chart:
    succeeded = sum(m.succeeded for m in series)
    failed = sum(m.failed for m in series)
    peak = _nice(max((m.succeeded + m.failed for m in series), default=0))
    n = len(series)
    ok, bad = [], []
    for i, m in enumerate(series):  # y grows downwards: a bar of v deliveries spans peak - v .. peak
        if m.succeeded:
            ok.append(f"M{i + 0.08:.2f} {peak}h0.84v{-m.succeeded}h-0.84z")
        if m.failed:
            bad.append(f"M{i + 0.08:.2f} {peak - m.succeeded}h0.84v{-m.failed}h-0.84z")
    labels = []
    for fraction, text in ((0.0, f"{peak:,}"), (0.5, f"{peak / 2:,.4g}"), (1.0, "0")):
        y = TOP + PLOT * fraction + 4
        labels.append(f'<text class="axis" x="{LEFT - 1}%" y="{y:.0f}" text-anchor="end">{text}</text>')
    if series:
        span = series[-1].at - series[0].at
        every = 10 if span <= timedelta(hours=2) else 240  # minutes between time labels
        for i, m in enumerate(series):
            if (m.at.hour * 60 + m.at.minute) % every == 0 and 2 < i < n - 3:
                labels.append(f'<text class="axis" x="{_x(i + 0.5, n)}" y="{HEIGHT - 6}" '
                              f'text-anchor="middle">{m.at:%H:%M}</text>')
    title = f"Deliveries per minute, {label}: {succeeded:,} succeeded, {failed:,} failed"
    svg = (
        f'<svg class="chart" width="100%" height="{HEIGHT}" role="img" aria-labelledby="chart-title" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="chart-title">{title}</title>'
        f'<svg x="{LEFT}%" y="{TOP}" width="{100 - LEFT}%" height="{PLOT}" viewBox="0 0 {max(n, 1)} {peak}" '
        f'preserveAspectRatio="none">'
        f'<line class="grid" x1="0" y1="0" x2="{n}" y2="0" vector-effect="non-scaling-stroke"/>'
        f'<line class="grid" x1="0" y1="{peak / 2}" x2="{n}" y2="{peak / 2}" vector-effect="non-scaling-stroke"/>'
        f'<line class="baseline" x1="0" y1="{peak}" x2="{n}" y2="{peak}" vector-effect="non-scaling-stroke"/>'
        f'<path class="ok" d="{"".join(ok)}"/><path class="bad" d="{"".join(bad)}"/></svg>'
        f'{"".join(labels)}</svg>'
    )
    return Chart(svg, succeeded, failed)
