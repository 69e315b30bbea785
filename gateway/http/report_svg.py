"""An interview's pictures as SVG text, drawn on the server: who spoke when, each turn's response
latency, and a leg's network over time.

Pure functions of numbers to markup, so the pictures are tested without a browser and the
report page needs no script or charting library (nor a CDN). Every picture is an
``<svg role="img">`` labelled by its own ``<title>`` and ``<desc>`` (``ident`` keeps their ids
unique on a page); colours come from classes (the page's stylesheet, whose CSP allows no inline
style), and sizes from a ``viewBox``, so a picture shrinks to a phone's width and prints.
Every figure here is also in a table on the page, the pictures' text alternative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: The drawing's coordinate system (the page scales it to its width).
WIDTH = 480
PLOT_LEFT = 84
PLOT_RIGHT = WIDTH - 12
PLOT_TOP = 20
LANE_HEIGHT = 28
CHART_HEIGHT = 150
AXIS_HEIGHT = 28


@dataclass(frozen=True, slots=True)
class Span:
    """One turn on the timeline: who (``speaker``: a CSS-safe name), from when to when
    (seconds since the interview's start), and what a hover or a screen reader says of it."""

    speaker: str
    begin: float
    end: float
    label: str


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: ``(seconds, value)`` points in time order, None where nothing was
    measured (the line breaks there)."""

    name: str
    points: Sequence[tuple[float, float | None]]
    css: str


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 up to at least ``maximum`` (1, 2, 2.5 or 5 times a power of ten
    apart), so an axis reads 0, 250, 500 rather than 0, 237.5, 475."""
    if not math.isfinite(maximum) or maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < maximum:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for an axis label or a table's time column."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def timeline(
    spans: Sequence[Span], speakers: Sequence[tuple[str, str]], *, duration: float, ident: str
) -> str:
    """Who spoke when: one lane per ``(css name, label)`` speaker, a bar per turn."""
    duration = max(duration, max((s.end for s in spans), default=0.0), 1.0)
    height = PLOT_TOP + LANE_HEIGHT * len(speakers) + AXIS_HEIGHT
    lanes = {name: index for index, (name, _) in enumerate(speakers)}
    parts = [
        _open(ident, height, "Who spoke when", _timeline_desc(spans, speakers, duration)),
    ]
    for index, (_, label) in enumerate(speakers):
        y = PLOT_TOP + LANE_HEIGHT * index
        parts.append(
            f'<text class="axis-label" x="{PLOT_LEFT - 6}" y="{y + LANE_HEIGHT / 2 + 4:.1f}"'
            f' text-anchor="end">{escape(label)}</text>'
        )
    for span in spans:
        if span.speaker not in lanes:
            continue
        x0, x1 = _x(span.begin, duration), _x(span.end, duration)
        y = PLOT_TOP + LANE_HEIGHT * lanes[span.speaker] + 4
        parts.append(
            f'<rect class="turn speaker-{escape(span.speaker)}" x="{x0:.1f}" y="{y}"'
            f' width="{max(x1 - x0, 1.5):.1f}" height="{LANE_HEIGHT - 8}">'
            f"<title>{escape(span.label)}</title></rect>"
        )
    parts.append(_time_axis(duration, PLOT_TOP + LANE_HEIGHT * len(speakers)))
    parts.append("</svg>")
    return "".join(parts)


def latency_bars(latencies_ms: Sequence[float], *, ident: str) -> str:
    """Each turn's response latency, one bar (``latency-mark``) per turn, in turn order."""
    ticks = nice_ticks(max(latencies_ms, default=0.0))
    top = ticks[-1]
    height = PLOT_TOP + CHART_HEIGHT + AXIS_HEIGHT
    if latencies_ms:
        desc = (
            f"{len(latencies_ms)} turns; fastest {min(latencies_ms):.0f} ms,"
            f" slowest {max(latencies_ms):.0f} ms. The table below lists every turn."
        )
    else:
        desc = "No turn was measured."
    parts = [_open(ident, height, "Response latency of each turn", desc)]
    parts.append(_value_axis(ticks, "ms"))
    slot = (PLOT_RIGHT - PLOT_LEFT) / max(len(latencies_ms), 1)
    bar = max(min(slot * 0.7, 40.0), 1.0)
    for index, ms in enumerate(latencies_ms):
        x = PLOT_LEFT + slot * index + (slot - bar) / 2
        y = _y(ms, top)
        parts.append(
            f'<rect class="latency-mark" data-turn="{index + 1}" x="{x:.1f}" y="{y:.1f}"'
            f' width="{bar:.1f}" height="{PLOT_TOP + CHART_HEIGHT - y:.1f}">'
            f"<title>Turn {index + 1}: {ms:.0f} ms</title></rect>"
        )
    base = PLOT_TOP + CHART_HEIGHT
    parts.append(
        f'<text class="axis-label" x="{(PLOT_LEFT + PLOT_RIGHT) / 2:.1f}" y="{base + 20}"'
        f' text-anchor="middle">turns 1 to {len(latencies_ms)}</text></svg>'
    )
    return "".join(parts)


def line_chart(
    series: Sequence[Series], *, duration: float, unit: str, title: str, ident: str
) -> str:
    """Values over time, a line per series (broken where a value is missing), with a legend."""
    values = [v for s in series for _, v in s.points if v is not None]
    ticks = nice_ticks(max(values, default=0.0))
    top = ticks[-1]
    duration = max(duration, max((t for s in series for t, _ in s.points), default=0.0), 1.0)
    height = PLOT_TOP + CHART_HEIGHT + AXIS_HEIGHT + 20
    parts = [_open(ident, height, title, _chart_desc(series, unit))]
    parts.append(_value_axis(ticks, unit))
    for s in series:
        for run in _runs(s.points):
            if len(run) == 1:
                t, v = run[0]
                parts.append(
                    f'<circle class="line {escape(s.css)}" cx="{_x(t, duration):.1f}"'
                    f' cy="{_y(v, top):.1f}" r="2"/>'
                )
                continue
            points = " ".join(f"{_x(t, duration):.1f},{_y(v, top):.1f}" for t, v in run)
            parts.append(f'<polyline class="line {escape(s.css)}" points="{points}"/>')
    parts.append(_time_axis(duration, PLOT_TOP + CHART_HEIGHT))
    legend_y = height - 6
    for index, s in enumerate(series):
        x = PLOT_LEFT + index * 130
        parts.append(
            f'<rect class="swatch {escape(s.css)}" x="{x}" y="{legend_y - 9}" width="12"'
            f' height="10"/><text class="axis-label" x="{x + 16}" y="{legend_y}">'
            f"{escape(s.name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# -- pieces -----------------------------------------------------------------------------------


def _open(ident: str, height: float, title: str, desc: str) -> str:
    ident = escape(ident)
    return (
        f'<svg class="chart" id="{ident}" viewBox="0 0 {WIDTH} {height:.0f}" role="img"'
        f' aria-labelledby="{ident}-title {ident}-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(desc)}</desc>'
    )


def _x(seconds: float, duration: float) -> float:
    return PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * min(max(seconds, 0.0), duration) / duration


def _y(value: float, top: float) -> float:
    return PLOT_TOP + CHART_HEIGHT * (1 - min(max(value, 0.0), top) / top)


def _time_axis(duration: float, y: float) -> str:
    parts = [f'<line class="axis" x1="{PLOT_LEFT}" y1="{y}" x2="{PLOT_RIGHT}" y2="{y}"/>']
    for tick in nice_ticks(duration, 5):
        if tick > duration:
            break
        x = _x(tick, duration)
        parts.append(
            f'<line class="axis" x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}"/>'
            f'<text class="axis-label" x="{x:.1f}" y="{y + 16}" text-anchor="middle">'
            f"{clock(tick)}</text>"
        )
    return "".join(parts)


def _value_axis(ticks: Sequence[float], unit: str) -> str:
    parts = []
    for tick in ticks:
        y = _y(tick, ticks[-1])
        parts.append(
            f'<line class="grid" x1="{PLOT_LEFT}" y1="{y:.1f}" x2="{PLOT_RIGHT}" y2="{y:.1f}"/>'
            f'<text class="axis-label" x="{PLOT_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{tick:g}</text>"
        )
    parts.append(f'<text class="axis-label" x="4" y="{PLOT_TOP - 2}">{escape(unit)}</text>')
    return "".join(parts)


def _runs(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The stretches of consecutive measured points."""
    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in points:
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((t, v))
    return [run for run in runs if run]


def _timeline_desc(
    spans: Sequence[Span], speakers: Sequence[tuple[str, str]], duration: float
) -> str:
    counts = ", ".join(
        f"{sum(1 for s in spans if s.speaker == name)} turns of the {label.lower()}"
        for name, label in speakers
    )
    return f"{counts}, over {clock(duration)}. The transcript below is the same in text."


def _chart_desc(series: Sequence[Series], unit: str) -> str:
    parts = []
    for s in series:
        values = [v for _, v in s.points if v is not None]
        if values:
            parts.append(f"{s.name}: {min(values):.4g} to {max(values):.4g} {unit}")
        else:
            parts.append(f"{s.name}: not measured")
    return "; ".join(parts) + ". The table below lists every sample."
