"""The report and dashboard pages' content as HTML, from what the database holds.

Pure functions (records in, markup out), so what a page says is tested without a server or a
browser. Everything an upstream, a browser or an admin wrote (transcript text, candidate
references, end reasons) is escaped here; the pictures come from :mod:`gateway.http.report_svg`
and every one of them has a table beside it that says the same in text. The markup uses
classes only (the pages' CSP allows no inline style) and is inserted by ``report.js`` into the
page shell, which fetched it with the viewer's bearer credential.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from uuid import UUID

from gateway.http import report_svg
from gateway.http.report_svg import Series, Span
from gateway.http.transcript_formats import SPEAKERS, one_line, spans
from gateway.sessions.turns import Turn
from storage.interviews import LIVE_STATUSES, SessionRecord
from storage.quality import LEGS, QualityOverview, TimedSample, TurnLatency

#: What each leg is, to a reader of the report.
LEG_NAMES = {"browser": "Candidate's browser", "upstream": "AI interviewer (upstream)"}
#: The timeline's lanes, top to bottom: (CSS name, label).
TIMELINE_SPEAKERS = (("interviewer", "Interviewer"), ("candidate", "Candidate"))


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one interview's report shows."""

    interview: SessionRecord
    turns: Sequence[Turn]
    samples: Sequence[TimedSample]
    latencies: Sequence[TurnLatency]
    now: datetime


def report_url(interview_id: UUID) -> str:
    return f"/interview/{interview_id}/report"


def duration_seconds(record: SessionRecord, now: datetime) -> float | None:
    """From connection to the end (or to ``now`` while it runs); None if it never connected."""
    if record.connected_at is None:
        return None
    end = record.ended_at or now
    return max(0.0, (end - record.connected_at).total_seconds())


def render_report(report: Report) -> str:
    record = report.interview
    origin = record.connected_at or record.created_at
    duration = duration_seconds(record, report.now) or 0.0
    parts = [
        '<article class="report" aria-labelledby="report-title">',
        '<header><h1 id="report-title">Interview report</h1>',
        _facts(record, report.now),
        "</header>",
        _timeline_section(report, origin, duration),
        _latency_section(report.latencies, origin),
        _quality_section(report.samples, origin, duration),
        _transcript_section(report.turns, origin),
        "</article>",
    ]
    return "".join(parts)


def render_dashboard(
    records: Sequence[SessionRecord],
    overviews: dict[UUID, QualityOverview],
    *,
    total: int,
    limit: int,
    offset: int,
    now: datetime,
) -> str:
    shown = f"{offset + 1} to {offset + len(records)} of {total}" if records else f"none of {total}"
    rows = []
    for record in records:
        length = duration_seconds(record, now)
        live = " (live)" if record.status in LIVE_STATUSES else ""
        name = record.candidate_ref or str(record.id)[:8]
        rows.append(
            (
                f'<a href="{report_url(record.id)}">{escape(name)}</a>',
                escape(record.status) + live,
                escape(record.actual_mode or record.requested_mode),
                _when(record.created_at),
                "—" if length is None else report_svg.clock(length),
                escape(record.end_reason or "—"),
                escape(_overview(overviews.get(record.id))),
            )
        )
    headers = ("Interview", "Status", "Mode", "Created", "Duration", "End reason", "Quality")
    parts = [
        '<section class="dashboard" aria-labelledby="dashboard-title">',
        '<h1 id="dashboard-title">Interviews</h1>',
        f'<p class="summary">Live interviews first, then the newest. Showing {shown}.</p>',
        _table("Interviews", headers, rows, cards=True),
    ]
    links = []
    if offset > 0:
        links.append(
            f'<a rel="prev" href="/dashboard?offset={max(0, offset - limit)}&amp;'
            f'limit={limit}">Previous page</a>'
        )
    if offset + len(records) < total:
        links.append(
            f'<a rel="next" href="/dashboard?offset={offset + len(records)}&amp;'
            f'limit={limit}">Next page</a>'
        )
    if links:
        parts.append(f'<nav class="pager" aria-label="Pages">{" ".join(links)}</nav>')
    parts.append("</section>")
    return "".join(parts)


# -- the report's sections --------------------------------------------------------------------


def _facts(record: SessionRecord, now: datetime) -> str:
    length = duration_seconds(record, now)
    facts = [
        ("Interview", str(record.id)),
        ("Candidate", record.candidate_ref or "—"),
        ("Status", record.status),
        ("Mode", record.actual_mode or record.requested_mode),
        ("Connected", _iso(record.connected_at)),
        ("Ended", _iso(record.ended_at)),
        ("Duration", "—" if length is None else report_svg.clock(length)),
        ("End reason", record.end_reason or "—"),
    ]
    items = "".join(f"<div><dt>{k}</dt><dd>{escape(v)}</dd></div>" for k, v in facts)
    return f'<dl class="facts">{items}</dl>'


def _section(ident: str, heading: str, body: str) -> str:
    return (
        f'<section class="report-section" aria-labelledby="{ident}">'
        f'<h2 id="{ident}">{heading}</h2>{body}</section>'
    )


def _table(
    label: str, headers: Sequence[str], rows: Sequence[Sequence[str]], *, cards: bool = False
) -> str:
    """A scrollable table (its cells already escaped) that a keyboard can reach. With
    ``cards``, a phone shows each row as a card of labelled cells (report.css); the explicit
    roles keep it a table for assistive technology, which a table displayed as blocks is not."""
    if cards:
        table, group, row, header, cell = (
            f' role="{r}"' for r in ("table", "rowgroup", "row", "columnheader", "cell")
        )
    else:
        table = group = row = header = cell = ""

    def label_of(header: str) -> str:
        return f' data-label="{header}"' if cards else ""

    head = "".join(f'<th scope="col"{header}>{h}</th>' for h in headers)
    body = "".join(
        f"<tr{row}>"
        + "".join(f"<td{cell}{label_of(h)}>{c}</td>" for h, c in zip(headers, values, strict=True))
        + "</tr>"
        for values in rows
    )
    css = ' class="cards"' if cards else ""
    return (
        f'<div class="table-scroll" role="region" aria-label="{escape(label)}" tabindex="0">'
        f"<table{css}{table}><caption>{escape(label)}</caption><thead{group}><tr{row}>{head}"
        f"</tr></thead><tbody{group}>{body}</tbody></table></div>"
    )


def _timeline_section(report: Report, origin: datetime, duration: float) -> str:
    turns = list(report.turns)
    bars = [
        Span(
            turn.role,
            begin,
            end,
            f"{SPEAKERS[turn.role]}, {report_svg.clock(begin)}: {_excerpt(turn.text)}",
        )
        for turn, (begin, end) in zip(turns, spans(turns, origin) if turns else [], strict=True)
    ]
    svg = report_svg.timeline(bars, TIMELINE_SPEAKERS, duration=duration, ident="timeline")
    return _section("timeline-heading", "Who spoke when", f"<figure>{svg}</figure>")


def _latency_section(latencies: Sequence[TurnLatency], origin: datetime) -> str:
    values = [t.latency_ms for t in latencies]
    if not values:
        note = (
            "<p>No turn was measured: response latency is measured at the gateway in relay "
            "mode only.</p>"
        )
        return _section("latency-heading", "Response latency", note)
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    intro = (
        "<p>From the candidate's end of speech to the first packet of the interviewer's voice, "
        f"at the gateway: median {median:.0f} ms, slowest {ordered[-1]:.0f} ms.</p>"
    )
    svg = report_svg.latency_bars(values, ident="latency")
    table = _table(
        "Response latency of each turn",
        ("Turn", "At", "Latency (ms)"),
        [
            (str(i + 1), _offset(t.at, origin), f"{t.latency_ms:.0f}")
            for i, t in enumerate(latencies)
        ],
    )
    return _section("latency-heading", "Response latency", f"{intro}<figure>{svg}</figure>{table}")


def _quality_section(samples: Sequence[TimedSample], origin: datetime, duration: float) -> str:
    if not samples:
        note = "<p>No call quality was sampled (relay mode only).</p>"
        return _section("quality-heading", "Call quality", note)
    body = []
    for leg in LEGS:
        mine = [s for s in samples if s.sample.leg == leg]
        if not mine:
            continue
        times = [(s.at - origin).total_seconds() for s in mine]

        def series(
            name: str, css: str, values: list[float | None], times: list[float] = times
        ) -> Series:
            return Series(name, list(zip(times, values, strict=True)), css)

        network = report_svg.line_chart(
            [
                series("round trip", "series-rtt", [s.sample.rtt_ms for s in mine]),
                series("jitter", "series-jitter", [s.sample.jitter_ms for s in mine]),
            ],
            duration=duration,
            unit="ms",
            title=f"{LEG_NAMES[leg]}: round-trip time and jitter",
            ident=f"{leg}-network",
        )
        bitrate = report_svg.line_chart(
            [
                series("in", "series-in", [s.sample.bitrate_in_kbps for s in mine]),
                series("out", "series-out", [s.sample.bitrate_out_kbps for s in mine]),
            ],
            duration=duration,
            unit="kbit/s",
            title=f"{LEG_NAMES[leg]}: bitrate",
            ident=f"{leg}-bitrate",
        )
        loss = report_svg.line_chart(
            [series("loss", "series-loss", [_percent(s.sample.loss) for s in mine])],
            duration=duration,
            unit="%",
            title=f"{LEG_NAMES[leg]}: packet loss",
            ident=f"{leg}-loss",
        )
        table = _table(
            f"{LEG_NAMES[leg]}: every sample",
            ("At", "RTT (ms)", "Jitter (ms)", "Loss (%)", "In (kbit/s)", "Out (kbit/s)"),
            [
                (
                    _offset(s.at, origin),
                    _num(s.sample.rtt_ms),
                    _num(s.sample.jitter_ms),
                    _num(_percent(s.sample.loss)),
                    _num(s.sample.bitrate_in_kbps),
                    _num(s.sample.bitrate_out_kbps),
                )
                for s in mine
            ],
        )
        body.append(
            f'<section class="leg" aria-labelledby="{leg}-heading">'
            f'<h3 id="{leg}-heading">{LEG_NAMES[leg]}</h3>'
            f'<div class="charts"><figure>{network}</figure><figure>{bitrate}</figure>'
            f"<figure>{loss}</figure></div>"
            f"<details><summary>Samples ({len(mine)})</summary>{table}</details></section>"
        )
    return _section("quality-heading", "Call quality", "".join(body))


def _transcript_section(turns: Sequence[Turn], origin: datetime) -> str:
    if not turns:
        return _section("transcript-heading", "Transcript", "<p>Nothing was said.</p>")
    rows = [
        (
            _offset(turn.received_at, origin),
            SPEAKERS[turn.role],
            escape(turn.source)
            + (" (forwarded by the browser)" if turn.source == "client" else ""),
            escape(one_line(turn.text)),
        )
        for turn in turns
    ]
    table = _table("Transcript", ("Time", "Speaker", "Source", "Text"), rows, cards=True)
    return _section("transcript-heading", "Transcript", table)


# -- small formats ----------------------------------------------------------------------------


def _overview(overview: QualityOverview | None) -> str:
    if overview is None:
        return "not measured"
    parts = []
    if overview.turns and overview.latency_ms_p50 is not None:
        parts.append(
            f"{overview.turns} turns, median {overview.latency_ms_p50:.0f} ms"
            f" (slowest {overview.latency_ms_max or 0:.0f} ms)"
        )
    if overview.browser_rtt_ms_p50 is not None:
        parts.append(f"RTT {overview.browser_rtt_ms_p50:.0f} ms")
    if overview.browser_loss_max is not None:
        parts.append(f"loss up to {overview.browser_loss_max * 100:.1f} %")
    return "; ".join(parts) or "not measured"


def _excerpt(text: str, limit: int = 80) -> str:
    line = one_line(text)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _offset(at: datetime, origin: datetime) -> str:
    return report_svg.clock((at - origin).total_seconds())


def _iso(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _when(value: datetime) -> str:
    stamp = value.astimezone(UTC)
    return f'<time datetime="{stamp.isoformat()}">{_iso(stamp)}</time>'


def _percent(loss: float | None) -> float | None:
    return None if loss is None else round(loss * 100, 2)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"
