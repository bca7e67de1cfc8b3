"""Deliveries per minute as an SVG drawn on the server: succeeded and failed stacked, one bar per minute.

Bars are two <path> elements (one per outcome), so a day of 1,440 minutes stays a few kilobytes; colours come
from classes in dashboard.css (the CSP allows no inline style)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from herald.db.minutes import Minute

WIDTH, HEIGHT = 960, 180
LEFT, BOTTOM, TOP = 44, 22, 8


@dataclass(frozen=True, slots=True)
class Chart:
    svg: str
    succeeded: int
    failed: int


def _nice(value: int) -> int:
    """A round axis maximum at or above `value`."""
    if value <= 5:
        return 5
    for step in (1, 2, 2.5, 5, 10):
        magnitude = 10 ** (len(str(value)) - 1)
        top = int(step * magnitude)
        if top >= value:
            return top
    return value


def draw(series: list[Minute], label: str) -> Chart:
    succeeded = sum(m.succeeded for m in series)
    failed = sum(m.failed for m in series)
    peak = _nice(max((m.succeeded + m.failed for m in series), default=0))
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    bar = plot_w / max(len(series), 1)
    gap = 1 if bar >= 4 else 0
    ok_path, bad_path = [], []
    for i, m in enumerate(series):
        x = LEFT + i * bar
        ok_h = plot_h * m.succeeded / peak
        bad_h = plot_h * m.failed / peak
        base = TOP + plot_h
        w = max(bar - gap, 0.5)
        if ok_h:
            ok_path.append(f"M{x:.1f} {base:.1f}h{w:.1f}v{-ok_h:.1f}h{-w:.1f}z")
        if bad_h:
            bad_path.append(f"M{x:.1f} {base - ok_h:.1f}h{w:.1f}v{-bad_h:.1f}h{-w:.1f}z")
    ticks = []
    if series:
        span = series[-1].at - series[0].at
        every = timedelta(minutes=10) if span <= timedelta(hours=2) else timedelta(hours=4)
        for i, m in enumerate(series):
            at = m.at
            if (at.hour * 60 + at.minute) % int(every.total_seconds() // 60) == 0:
                x = LEFT + i * bar
                ticks.append(f'<line class="tick" x1="{x:.1f}" y1="{TOP + plot_h}" x2="{x:.1f}" '
                             f'y2="{TOP + plot_h + 4}"/><text class="axis" x="{x:.1f}" y="{HEIGHT - 6}" '
                             f'text-anchor="middle">{at:%H:%M}</text>')
    title = f"Deliveries per minute, {label}: {succeeded:,} succeeded, {failed:,} failed"
    svg = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="chart-title">{title}</title>'
        f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{WIDTH}" y2="{TOP}"/>'
        f'<line class="grid" x1="{LEFT}" y1="{TOP + plot_h / 2:.1f}" x2="{WIDTH}" y2="{TOP + plot_h / 2:.1f}"/>'
        f'<line class="baseline" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH}" y2="{TOP + plot_h}"/>'
        f'<text class="axis" x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{peak:,}</text>'
        f'<text class="axis" x="{LEFT - 6}" y="{TOP + plot_h / 2 + 4:.1f}" text-anchor="end">{peak / 2:,.4g}</text>'
        f'<text class="axis" x="{LEFT - 6}" y="{TOP + plot_h + 4}" text-anchor="end">0</text>'
        f'<path class="ok" d="{"".join(ok_path)}"/><path class="bad" d="{"".join(bad_path)}"/>'
        f'{"".join(ticks)}</svg>'
    )
    return Chart(svg, succeeded, failed)
