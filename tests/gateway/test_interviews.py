"""Whole interviews through a real gateway: relay, proxy, and auto's fallback to proxy."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.sim.candidate import CandidateReport
from gateway.sim.script import Script
from storage import transcripts

from .conftest import GatewayFactory, RunningGateway

#: Slow (whole interviews over WebRTC): left out by `scripts/test -m "not slow"`.
pytestmark = pytest.mark.slow

SCRIPT = Script.default()
TRANSCRIPT_LINES = 2 * len(SCRIPT.turns) + 1  # questions, answers, the closing line


async def take_interview(
    gateway: RunningGateway, mode: str
) -> tuple[CandidateReport, list[Any], Any]:
    invitation = await gateway.invite(mode)
    report = await gateway.candidate(invitation).run(time_limit=60)
    assert report.error is None, report.error
    await gateway.writer.flush()
    rows = await transcripts.read_transcript(
        gateway.db, invitation.tenant_id, invitation.interview_id
    )
    record = await gateway.ended_record(invitation)
    return report, rows, record


def assert_whole_transcript(rows: list[Any], source: str) -> None:
    """Every scripted line once, in reading order, interviewer and candidate taking turns."""
    expected = []
    for turn in SCRIPT.turns:
        expected += [("interviewer", turn.question), ("candidate", turn.answer)]
    expected.append(("interviewer", SCRIPT.closing))
    assert [(row.role, row.text) for row in rows] == expected
    assert len({row.event_id for row in rows}) == TRANSCRIPT_LINES
    assert {row.source for row in rows} == {source}


async def test_relay_interview_stores_every_line_once_and_ends_with_bye(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay")
    report, rows, record = await take_interview(gateway, "relay")
    assert report.mode == "relay"
    assert report.audio_frames_received > 0  # the AI's voice crossed the relay
    assert [line["text"] for line in report.transcript][: len(SCRIPT.turns)] != []
    assert_whole_transcript(rows, "relay")
    assert (record.status, record.end_reason, record.actual_mode) == ("ended", "bye", "relay")
    assert record.upstream_kind == "sim"
    assert record.upstream_call_id.startswith("rtc_")
    assert record.connected_at is not None and record.ended_at is not None
    assert "127.0.0.1" in record.selected_pair
    assert gateway.sessions.relay_slots_used == 0  # the relay slot was given back
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.base_url}/metrics") as r:
        metrics = await r.text()
    for line in (
        "gateway_sessions_started_total 1.0",
        'gateway_sessions_total{mode="relay"} 1.0',
        'gateway_sessions_ended_total{reason="bye"} 1.0',
        f'gateway_transcript_writer_events_total{{outcome="committed"}} {TRANSCRIPT_LINES}.0',
        "gateway_sessions_live 0.0",
    ):
        assert line in metrics.splitlines(), line


async def test_proxy_interview_captures_transcripts_from_the_sideband(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="proxy")
    report, rows, record = await take_interview(gateway, "proxy")
    assert report.mode == "proxy"
    assert report.audio_frames_received > 0  # media went straight to the upstream and back
    assert_whole_transcript(rows, "sideband")
    assert (record.status, record.end_reason, record.actual_mode) == ("ended", "bye", "proxy")


async def test_auto_falls_back_to_proxy_without_relay_capacity(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="auto", max_relay_sessions=0)
    report, rows, record = await take_interview(gateway, "auto")
    assert report.mode == "proxy" and record.actual_mode == "proxy"
    assert_whole_transcript(rows, "sideband")


async def test_auto_falls_back_to_proxy_when_the_upstream_leg_cannot_connect(
    start_gateway: GatewayFactory,
) -> None:
    # No WebRTC connection completes in a millisecond: the relay's upstream leg times out.
    gateway = await start_gateway(mode="auto", upstream_connect_timeout=0.001)
    report, rows, record = await take_interview(gateway, "auto")
    assert report.mode == "proxy" and record.actual_mode == "proxy"
    assert gateway.sessions.stats.fallbacks == 1
    assert gateway.sessions.relay_slots_used == 0
    assert_whole_transcript(rows, "sideband")


async def test_relay_requested_without_capacity_fails_clearly(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay", max_relay_sessions=0)
    invitation = await gateway.invite("relay")
    report = await gateway.candidate(invitation).run(time_limit=20)
    assert report.error is not None and "at_capacity" in report.error
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("failed", "at_capacity")
