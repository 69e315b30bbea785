"""The report's pictures as SVG text: what each draws, and that every one is labelled and
well-formed (parsed as XML, as a browser's SVG parser would)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gateway.http.report_svg import (
    CHART_HEIGHT,
    PLOT_LEFT,
    PLOT_RIGHT,
    Series,
    Span,
    clock,
    latency_bars,
    line_chart,
    nice_ticks,
    timeline,
)

SVG = "{http://www.w3.org/2000/svg}"
SPEAKERS = (("interviewer", "Interviewer"), ("candidate", "Candidate"))


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    ident = root.get("id")
    assert root.get("aria-labelledby") == f"{ident}-title {ident}-desc"
    assert root.find(f"{SVG}title").get("id") == f"{ident}-title"  # type: ignore[union-attr]
    assert root.find(f"{SVG}desc").get("id") == f"{ident}-desc"  # type: ignore[union-attr]
    return root


def test_ticks_are_round_and_reach_the_maximum() -> None:
    assert nice_ticks(950) == [0, 250, 500, 750, 1000]
    assert nice_ticks(40) == [0, 10, 20, 30, 40]
    assert nice_ticks(0.03) == [0, 0.01, 0.02, 0.03]
    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(float("nan")) == [0, 1]


def test_clock_reads_minutes_and_hours() -> None:
    assert clock(0) == "0:00"
    assert clock(75.4) == "1:15"
    assert clock(3725) == "1:02:05"
    assert clock(-3) == "0:00"


def test_the_timeline_puts_each_turn_in_its_speakers_lane_in_time_order() -> None:
    spans = [
        Span("interviewer", 0, 4, "Interviewer, 0:00: Tell me <about> yourself"),
        Span("candidate", 5, 9, "Candidate, 0:05: I build things & fix them"),
        Span("interviewer", 10, 12, "Interviewer, 0:10: Thanks"),
    ]
    root = parse(timeline(spans, SPEAKERS, duration=12, ident="timeline"))
    bars = root.findall(f"{SVG}rect")
    assert [b.get("class") for b in bars] == [
        "turn speaker-interviewer",
        "turn speaker-candidate",
        "turn speaker-interviewer",
    ]
    xs = [float(b.get("x", "")) for b in bars]
    assert PLOT_LEFT <= xs[0] < xs[1] < xs[2] < PLOT_RIGHT
    lanes = {b.get("class"): float(b.get("y", "")) for b in bars}
    assert lanes["turn speaker-interviewer"] < lanes["turn speaker-candidate"]
    # the titles carry the text, escaped in the markup and whole once parsed
    assert bars[0].find(f"{SVG}title").text == spans[0].label  # type: ignore[union-attr]
    assert "2 turns of the interviewer, 1 turns of the candidate" in (
        root.find(f"{SVG}desc").text or ""  # type: ignore[union-attr]
    )


def test_the_latency_picture_has_one_mark_per_turn_each_as_tall_as_its_latency() -> None:
    latencies = [400.0, 1200.0, 800.0]
    root = parse(latency_bars(latencies, ident="latency"))
    marks = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "latency-mark"]
    assert [m.get("data-turn") for m in marks] == ["1", "2", "3"]
    heights = [float(m.get("height", "")) for m in marks]
    assert heights[1] > heights[2] > heights[0] > 0
    assert abs(heights[1] / heights[0] - 3) < 0.05  # drawn to scale from zero
    assert max(heights) <= CHART_HEIGHT
    assert [m.find(f"{SVG}title").text for m in marks] == [  # type: ignore[union-attr]
        "Turn 1: 400 ms",
        "Turn 2: 1200 ms",
        "Turn 3: 800 ms",
    ]


def test_a_latency_picture_without_turns_says_so() -> None:
    root = parse(latency_bars([], ident="latency"))
    assert not [r for r in root.iter(f"{SVG}rect") if r.get("class") == "latency-mark"]
    assert root.find(f"{SVG}desc").text == "No turn was measured."  # type: ignore[union-attr]


def test_a_line_breaks_where_nothing_was_measured() -> None:
    rtt = Series("round trip", [(0, 20.0), (5, 30.0), (10, None), (15, 25.0), (20, 22.0)], "a")
    lonely = Series("jitter", [(0, None), (5, 4.0), (10, None)], "b")
    root = parse(
        line_chart([rtt, lonely], duration=20, unit="ms", title="RTT <and> jitter", ident="x")
    )
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2  # the round trip, in two runs
    assert all(len(p.get("points", "").split()) == 2 for p in lines)
    assert len(root.findall(f"{SVG}circle")) == 1  # jitter's one measured point
    assert root.find(f"{SVG}title").text == "RTT <and> jitter"  # type: ignore[union-attr]
    desc = root.find(f"{SVG}desc").text or ""  # type: ignore[union-attr]
    assert "round trip: 20 to 30 ms" in desc and "jitter: 4 to 4 ms" in desc
    legend = [t.text for t in root.iter(f"{SVG}text")]
    assert "round trip" in legend and "jitter" in legend


def test_a_chart_with_nothing_measured_is_still_a_labelled_picture() -> None:
    root = parse(
        line_chart([Series("loss", [], "c")], duration=0, unit="%", title="Loss", ident="y")
    )
    assert not root.findall(f"{SVG}polyline")
    assert "loss: not measured" in (root.find(f"{SVG}desc").text or "")  # type: ignore[union-attr]
