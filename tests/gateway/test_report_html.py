"""What the report and dashboard say, from records alone (no server, no browser): times from
the connection, everything foreign escaped, and what an interview without measurements shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from gateway.http.report_html import Report, render_dashboard, render_report
from gateway.sessions.turns import Turn
from storage.interviews import SessionRecord
from storage.quality import LegSample, QualityOverview, TimedSample, TurnLatency

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def record(**fields: Any) -> SessionRecord:
    values: dict[str, Any] = {
        "id": uuid4(),
        "tenant_id": uuid4(),
        "status": "ended",
        "requested_mode": "auto",
        "actual_mode": "relay",
        "upstream_kind": "realtime",
        "upstream_call_id": None,
        "connection_state": None,
        "ice_state": None,
        "selected_pair": None,
        "connected_at": START,
        "ended_at": START + timedelta(minutes=2, seconds=5),
        "end_reason": "completed",
        "candidate_ref": None,
        "metadata": {},
        "created_at": START - timedelta(minutes=1),
        "updated_at": START,
    }
    return SessionRecord(**{**values, **fields})


def turn(seq: int, role: Any, text: str, after: float, source: Any = "relay") -> Turn:
    return Turn(seq, role, text, source, None, START + timedelta(seconds=after), None, None, ())


def test_a_relayed_interviews_report_times_everything_from_the_connection() -> None:
    turns = [
        turn(1, "interviewer", "Tell me about yourself.", 1),
        turn(2, "candidate", "I </td><script>x()</script> build things", 9),
        turn(3, "candidate", "and I forward lines", 12, source="client"),
    ]
    samples = [
        TimedSample(START + timedelta(seconds=s), LegSample(leg, rtt_ms=20.0 + s, loss=0.01))
        for s in (5, 10)
        for leg in ("browser", "upstream")
    ]
    latencies = [TurnLatency(START + timedelta(seconds=10), 640.0)]
    html = render_report(Report(record(), turns, samples, latencies, now=START))
    assert '<td role="cell" data-label="Time">0:09</td>' in html
    assert "<script>" not in html and "&lt;/td&gt;&lt;script&gt;x()&lt;/script&gt;" in html
    assert "client (forwarded by the browser)" in html
    assert html.count('class="latency-mark"') == 1
    assert "median 640 ms, slowest 640 ms" in html
    assert "<dd>2:05</dd>" in html  # the duration, connection to end
    assert "<td>0:10</td><td>30</td><td>—</td><td>1</td>" in html  # rtt, jitter, loss %
    for leg in ("browser", "upstream"):
        assert f'id="{leg}-network"' in html and f'id="{leg}-loss"' in html


def test_a_proxied_live_interview_says_it_measured_nothing_and_runs_until_now() -> None:
    live = record(status="active", actual_mode="proxy", ended_at=None, end_reason=None)
    html = render_report(Report(live, [], [], [], now=START + timedelta(seconds=42)))
    assert "No turn was measured" in html
    assert "No call quality was sampled" in html
    assert "Nothing was said." in html
    assert "<dd>0:42</dd>" in html


def test_the_dashboard_marks_live_interviews_and_links_every_report() -> None:
    live = record(status="active", ended_at=None, end_reason=None, candidate_ref="<b>Ann</b>")
    done = record(candidate_ref="bob")
    waiting = record(status="waiting", connected_at=None, ended_at=None, end_reason=None)
    overview = QualityOverview(4, 512.4, 900.0, 24.2, 0.015)
    html = render_dashboard(
        [live, done, waiting],
        {done.id: overview},
        total=7,
        limit=3,
        offset=3,
        now=START + timedelta(seconds=30),
    )
    assert f'<a href="/interview/{live.id}/report">&lt;b&gt;Ann&lt;/b&gt;</a>' in html
    assert "active (live)" in html and "waiting (live)" not in html
    assert "4 turns, median 512 ms (slowest 900 ms); RTT 24 ms; loss up to 1.5 %" in html
    assert html.count("not measured") == 2
    assert "Showing 4 to 6 of 7" in html
    assert 'rel="prev" href="/dashboard?offset=0&amp;limit=3"' in html
    assert 'rel="next" href="/dashboard?offset=6&amp;limit=3"' in html
    assert '<td role="cell" data-label="Duration">0:30</td>' in html  # live: until now
