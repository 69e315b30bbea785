"""Whole interviews on GPT-Live (the in-process ``sim-live`` upstream) through a real gateway:
relay, proxy and auto; fragments stored once each and read back as the script's turns; an
upstream that closes the session mid-interview ends it once, with the mapped reason."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from gateway.app import SIMULATED_UPSTREAM
from gateway.sessions.turns import read_turns
from gateway.sim.live import SimulatedLiveSession
from gateway.sim.script import Script
from signaling.client import SignalingClient
from storage import quality, transcripts

from .conftest import GatewayFactory, RunningGateway

#: Slow (whole interviews over WebRTC): left out by `scripts/test -m "not slow"`.
pytestmark = pytest.mark.slow

SCRIPT = Script.default()
EXPECTED = [
    *((role, text) for t in SCRIPT.turns for role, text in (("interviewer", t.question),
                                                            ("candidate", t.answer))),
    ("interviewer", SCRIPT.closing),
]  # fmt: skip


async def take_interview(gateway: RunningGateway, mode: str) -> tuple[Any, list[Any], Any]:
    invitation = await gateway.invite(mode)
    report = await gateway.candidate(invitation).run(time_limit=90)
    assert report.error is None, report.error
    await gateway.writer.flush()
    rows = await transcripts.read_transcript(
        gateway.db, invitation.tenant_id, invitation.interview_id
    )
    return report, rows, await gateway.ended_record(invitation)


def assert_read_as_turns(rows: list[Any], source: str) -> None:
    """Every fragment stored once, and the fragments read back as the script's turns."""
    assert len({row.event_id for row in rows}) == len(rows)
    assert {row.event_type for row in rows} == {
        "session.input_transcript.delta",
        "session.output_transcript.delta",
    }
    assert {row.source for row in rows} == {source}
    turns = read_turns(rows)
    assert [(t.role, t.text) for t in turns] == [(r, " ".join(x.split())) for r, x in EXPECTED]
    assert sum(len(t.event_ids) for t in turns) == len(rows)


@pytest.mark.parametrize(("mode", "source"), [("relay", "relay"), ("proxy", "sideband")])
async def test_a_live_interview_is_stored_once_and_reads_as_turns(
    start_gateway: GatewayFactory, mode: str, source: str
) -> None:
    gateway = await start_gateway(mode=mode, upstream="sim-live")
    report, rows, record = await take_interview(gateway, mode)
    assert report.mode == mode and report.audio_frames_received > 0
    assert_read_as_turns(rows, source)
    assert (record.status, record.end_reason, record.actual_mode) == ("ended", "bye", mode)
    assert record.upstream_kind == "sim-live" and record.upstream_call_id.startswith("live_")
    # the browser saw the same turns live: each one's final line, joined from its fragments
    live = [(line["role"], line["text"]) for line in report.transcript]
    assert live[: len(EXPECTED) - 1] == [(r, " ".join(x.split())) for r, x in EXPECTED][:-1]
    (call,) = gateway.app[SIMULATED_UPSTREAM].calls.values()
    assert isinstance(call, SimulatedLiveSession) and call.ended.is_set()  # nothing left open


async def test_auto_without_relay_capacity_proxies_a_live_interview(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="auto", upstream="sim-live", max_relay_sessions=0)
    report, rows, record = await take_interview(gateway, "auto")
    assert report.mode == "proxy" and record.actual_mode == "proxy"
    assert_read_as_turns(rows, "sideband")


async def first_answer_heard(gateway: RunningGateway) -> SimulatedLiveSession:
    """The sim's session once it has heard the candidate's first answer."""
    sim = gateway.app[SIMULATED_UPSTREAM]
    async with asyncio.timeout(30):
        while not (calls := list(sim.calls.values())) or not calls[0].heard:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert isinstance(calls[0], SimulatedLiveSession)
    return calls[0]


@pytest.mark.parametrize(
    ("mode", "upstream_reason", "status", "reason"),
    [
        ("proxy", "expired", "ended", "upstream_expired"),
        ("relay", "expired", "ended", "upstream_expired"),
        ("relay", "connection_lost", "failed", "upstream_connection_lost"),
        ("relay", "content", "failed", "upstream_content"),
    ],
)
async def test_a_session_the_upstream_closes_ends_once_with_the_mapped_reason(
    start_gateway: GatewayFactory, mode: str, upstream_reason: str, status: str, reason: str
) -> None:
    gateway = await start_gateway(mode=mode, upstream="sim-live")
    invitation = await gateway.invite(mode)
    candidate = asyncio.ensure_future(gateway.candidate(invitation).run(time_limit=60))
    call = await first_answer_heard(gateway)
    await call.end(upstream_reason)
    report = await candidate
    assert report.error is not None and reason in report.error
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == (status, reason)
    metrics = gateway.sessions.stats
    assert metrics.relay + metrics.proxy == 1


async def test_fragments_out_of_order_and_twice_over_two_paths_are_one_row_each(
    start_gateway: GatewayFactory,
) -> None:
    """The session as the relay's data channel, the sideband and the browser feed it: each
    fragment once in the database, the turns in timeline order whatever the arrival order."""
    gateway = await start_gateway(mode="proxy", upstream="sim-live")
    invitation = await gateway.invite("proxy")
    client = SignalingClient()  # admitted, so the session exists; no call is needed
    await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    assert session is not None
    said = [("interviewer", "How are you today?"), ("candidate", "Very well, thank you."),
            ("interviewer", "Good. Let us begin.")]  # fmt: skip
    kinds = {"interviewer": "session.output_transcript.delta",
             "candidate": "session.input_transcript.delta"}  # fmt: skip
    events, clock = [], 0
    for role, text in said:
        for index, word in enumerate(text.split()):
            delta = word if index == 0 else f" {word}"
            events.append({"type": kinds[role], "event_id": f"event_{len(events)}",
                           "delta": delta, "start_ms": clock, "end_ms": clock + 200})  # fmt: skip
            clock += 200
        clock += 600  # the pause before the other speaker
    shuffled = random.Random(5).sample(events, len(events))
    for event in shuffled:
        session.server_event(json.dumps(event), "relay")
    for event in reversed(shuffled):
        session.server_event(json.dumps(event), "sideband")
        session.server_event(json.dumps(event).encode(), "client")
    await gateway.writer.flush()
    rows = await transcripts.read_transcript(
        gateway.db, invitation.tenant_id, invitation.interview_id
    )
    assert sorted(row.event_id for row in rows) == sorted(e["event_id"] for e in events)
    assert [(t.role, t.text) for t in read_turns(rows)] == said
    await client.bye()
    await client.close()


async def test_each_candidate_turn_on_live_has_one_latency_from_its_end_ms(
    start_gateway: GatewayFactory,
) -> None:
    """GPT-Live has no ``speech_stopped``: the relay times a turn from the last input
    fragment's ``end_ms`` (placed on its own clock) to the interviewer's next voice packet. One
    row per answer; each at least most of the simulator's VAD hangover (300 ms of silence it
    waits before answering, which lies after ``end_ms``), and under ten seconds."""
    gateway = await start_gateway(mode="relay", upstream="sim-live", quality_interval=0.3)
    invitation = await gateway.invite("relay")
    report = await gateway.candidate(invitation).run(time_limit=90)
    assert report.error is None, report.error
    await gateway.ended_record(invitation)
    _, turns = await quality.quality_samples(
        gateway.db, invitation.tenant_id, invitation.interview_id
    )
    assert len(turns) == report.answers_spoken == len(SCRIPT.turns)
    for turn in turns:
        assert 150 <= turn.latency_ms < 10_000, turns
