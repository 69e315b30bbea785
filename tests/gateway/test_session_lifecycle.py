"""A session always ends in a recorded state with a reason, whatever ends it."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from gateway.app import SIMULATED_UPSTREAM
from gateway.media import ice
from gateway.sessions.invitations import Invitation
from gateway.sim.candidate import HeadlessCandidate
from gateway.sim.speech import SpeechTrack
from gateway.upstream.openai import EVENTS_LABEL
from signaling.client import SignalingClient
from storage import interviews, transcripts

from .conftest import GatewayFactory, RunningGateway

#: Slow (WebRTC between real peers, seconds each): left out by `scripts/test -m "not slow"`.
pytestmark = pytest.mark.slow


async def connected(gateway: RunningGateway, mode: str) -> tuple[Invitation, HeadlessCandidate]:
    invitation = await gateway.invite(mode)
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    return invitation, candidate


async def test_time_limit_ends_the_session(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(mode="relay", session_time_limit=1.0)
    invitation = await gateway.invite("relay")
    report = await gateway.candidate(invitation).run(time_limit=30)
    assert report.error is not None and "time_limit" in report.error
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "time_limit")
    assert gateway.sessions.relay_slots_used == 0


async def test_a_candidate_who_vanishes_fails_the_session_after_the_grace(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay", reconnect_grace=0.3)
    invitation, candidate = await connected(gateway, "relay")
    await candidate.close()  # no bye: the socket and the peer connection just go
    record = await gateway.ended_record(invitation)
    # whichever the gateway noticed first: the DTLS close or the socket going
    assert (record.status, record.end_reason) in {
        ("failed", "peer_closed"),
        ("failed", "signaling_disconnected"),
    }
    assert record.upstream_call_id.startswith("rtc_")  # and the upstream call was hung up:
    assert len(gateway.sessions) == 0


async def test_a_silent_peer_is_noticed_within_the_peer_timeout(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay", peer_timeout=1.0, reconnect_grace=0.2)
    invitation, candidate = await connected(gateway, "relay")
    assert candidate.pc is not None
    sender = next(s for s in candidate.pc.getSenders() if s.track and s.track.kind == "audio")
    sender.replaceTrack(None)  # the signaling socket stays; the media stops
    record = await gateway.ended_record(invitation, within=10)
    assert (record.status, record.end_reason) == ("failed", "peer_silent")
    await candidate.close()


async def test_a_reconnected_candidate_keeps_the_relayed_conversation(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay")
    invitation, candidate = await connected(gateway, "relay")
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    call_id = session.call.call_id
    await candidate.connect(reconnect=True)  # new socket, new peer connection
    assert gateway.sessions.live(invitation.tenant_id, invitation.interview_id) is session
    assert session.call.call_id == call_id  # the same AI conversation
    await candidate.converse()
    await candidate.client.bye()
    await candidate.close()
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "bye")
    await gateway.writer.flush()
    rows = await transcripts.read_transcript(
        gateway.db, invitation.tenant_id, invitation.interview_id
    )
    assert [row.role for row in rows][-1] == "interviewer" and len(rows) >= 5


async def test_shutdown_ends_every_live_session_in_a_recorded_state(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay")
    sessions = [await connected(gateway, "relay") for _ in range(2)]
    await gateway.stop()
    reopened = await start_gateway()  # the same database, seen from a new gateway
    for invitation, candidate in sessions:
        record = await interviews.get_session(
            reopened.db, invitation.tenant_id, invitation.interview_id
        )
        assert (record.status, record.end_reason) == ("failed", "shutdown")
        with pytest.raises(RuntimeError, match="bye: shutdown"):
            await asyncio.wait_for(candidate.converse(), 5)
        await candidate.close()


async def test_events_forwarded_by_the_browser_are_stored_once_as_client_source(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="proxy")
    invitation, candidate = await connected(gateway, "proxy")
    event = {
        "type": "conversation.item.input_audio_transcription.completed",
        "event_id": f"event_client_{uuid.uuid4().hex}",
        "item_id": "item_client_1",
        "content_index": 0,
        "transcript": "Forwarded by the browser.",
        "usage": {"type": "duration", "seconds": 1},
    }
    assert candidate.client is not None
    for _ in range(2):  # the same event twice: one row
        await candidate.client.send_event(event)
    await candidate.client.send_event({"type": "not.a.transcript", "event_id": "x"})
    await candidate.client.bye()
    await candidate.close()
    await gateway.ended_record(invitation)
    await gateway.writer.flush()
    rows = await transcripts.read_transcript(
        gateway.db, invitation.tenant_id, invitation.interview_id
    )
    forwarded = [row for row in rows if row.event_id == event["event_id"]]
    assert len(forwarded) == 1
    assert (forwarded[0].source, forwarded[0].text) == ("client", "Forwarded by the browser.")
    assert json.loads(json.dumps(forwarded[0].raw))["item_id"] == "item_client_1"


async def test_an_offer_that_cannot_connect_is_a_clear_error_and_the_session_lives(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay")
    invitation = await gateway.invite("relay")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(SpeechTrack())
    pc.createDataChannel(EVENTS_LABEL)
    with ice.host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    good = pc.localDescription.sdp
    # It parses as SDP, but without a DTLS fingerprint no connection can ever form.
    broken = "\r\n".join(line for line in good.split("\r\n") if not line.startswith("a=fing"))
    client = SignalingClient()
    await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
    await client.send({"type": "offer", "sdp": broken})
    error = await client.receive()
    assert (error["type"], error["code"], error["fatal"]) == ("error", "bad_sdp", False)
    assert "fingerprint" in error["message"]
    await client.send({"type": "offer", "sdp": good})  # the same socket can still offer
    answer = await client.receive()
    assert (answer["type"], answer["mode"]) == ("answer", "relay")
    await client.close()
    await pc.close()


async def test_an_interviews_own_duration_and_upstream_session_apply(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay")
    invitation = await gateway.invite("relay")
    await interviews.set_interview_options(
        gateway.db,
        invitation.tenant_id,
        invitation.interview_id,
        max_duration_s=1,
        upstream_session={"instructions": "Ask about distributed systems."},
    )
    report = await gateway.candidate(invitation).run(time_limit=30)
    assert report.error is not None and "time_limit" in report.error
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "time_limit")
    (call,) = gateway.app[SIMULATED_UPSTREAM].calls.values()
    assert call.session["instructions"] == "Ask about distributed systems."
    assert call.transcription_enabled  # the gateway's defaults are still there underneath
