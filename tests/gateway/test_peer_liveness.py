"""A lost candidate who comes back is never failed: every test here runs past the grace period
that a wrongly armed timer would fire in, then finishes the interview normally."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from gateway.app import SIMULATED_UPSTREAM
from gateway.media import ice
from gateway.sessions.invitations import Invitation
from gateway.sessions.session import InterviewSession
from gateway.sim.candidate import HeadlessCandidate
from gateway.sim.script import Script
from gateway.sim.speech import SpeechTrack
from gateway.upstream.openai import EVENTS_LABEL
from signaling.client import SignalingClient
from storage import transcripts

from .conftest import GatewayFactory, RunningGateway

GRACE = 2.0
PEER_TIMEOUT = 1.0


async def until(session: InterviewSession, condition: Callable[[], bool], within: float) -> None:
    """Wait for the session's losses to reach a state (woken by each change, never guessed)."""
    async with asyncio.timeout(within):
        await session.losses_reach(condition)


async def outlives_the_grace(session: InterviewSession) -> None:
    """The session is still live a whole grace period (and a margin) later."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(session.ended.wait(), GRACE + 1.5)
    assert not session.ended.is_set(), f"the session ended: {session.end_reason}"


async def finishes_with_bye(
    gateway: RunningGateway,
    invitation: Invitation,
    candidate: HeadlessCandidate,
    *,
    converse: bool = True,
) -> None:
    if converse:
        await candidate.converse()
    assert candidate.client is not None
    await candidate.client.bye()
    await candidate.close()
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "bye")


@pytest.fixture
async def gateway(start_gateway: GatewayFactory) -> RunningGateway:
    return await start_gateway(mode="relay", peer_timeout=PEER_TIMEOUT, reconnect_grace=GRACE)


def audio_sender(candidate: HeadlessCandidate) -> RTCRtpSender:
    assert candidate.pc is not None
    return next(s for s in candidate.pc.getSenders() if s.track and s.track.kind == "audio")


async def silenced(
    gateway: RunningGateway,
) -> tuple[Invitation, HeadlessCandidate, InterviewSession, Callable[[], None]]:
    """A connected candidate whose audio then stops (the socket stays), once the gateway has
    counted the media lost; and how to start the same audio again."""
    invitation = await gateway.invite("relay")
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    assert session is not None
    sender = audio_sender(candidate)
    track = sender.track
    assert track is not None
    sender.replaceTrack(None)
    await until(session, lambda: "media" in session.losses, within=PEER_TIMEOUT + 5)
    return invitation, candidate, session, lambda: sender.replaceTrack(track)


async def test_media_that_returns_on_the_same_peer_cancels_the_loss(
    gateway: RunningGateway,
) -> None:
    invitation, candidate, session, resume = await silenced(gateway)  # a network blip
    lost_at = time.monotonic()
    resume()
    await until(session, lambda: not session.losses, within=5)
    await outlives_the_grace(session)
    assert time.monotonic() - lost_at > GRACE  # the test ran past the timer it guards against
    await finishes_with_bye(gateway, invitation, candidate)


async def test_a_reconnect_after_silence_cancels_the_loss_for_good(
    gateway: RunningGateway,
) -> None:
    invitation, candidate, session, _ = await silenced(gateway)
    lost_at = time.monotonic()
    await candidate.connect(reconnect=True)  # new socket, new peer connection
    await until(session, lambda: not session.losses, within=5)
    await outlives_the_grace(session)
    assert time.monotonic() - lost_at > GRACE
    # (The headless candidate's answer spoken into the silenced track is lost with it, so the
    # scripted conversation cannot resume where it stood; the session's survival is the point.)
    await finishes_with_bye(gateway, invitation, candidate, converse=False)


async def test_a_reconnect_that_stays_silent_still_fails(gateway: RunningGateway) -> None:
    """The other side of the coin: a new peer whose media never flows is noticed again."""
    invitation = await gateway.invite("relay")
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    await candidate.connect(reconnect=True)
    audio_sender(candidate).replaceTrack(None)
    record = await gateway.ended_record(invitation, within=PEER_TIMEOUT + GRACE + 10)
    assert (record.status, record.end_reason) == ("failed", "peer_silent")
    await candidate.close()


async def test_auto_falling_back_to_proxy_leaves_no_loss_behind(
    start_gateway: GatewayFactory,
) -> None:
    """The relay the gateway closes itself when its upstream leg is slow is not a lost peer."""
    gateway = await start_gateway(
        mode="auto", upstream_connect_timeout=0.001, reconnect_grace=GRACE
    )
    invitation = await gateway.invite("auto")
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    assert candidate.report.mode == "proxy"
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    assert session is not None and not session.losses
    await outlives_the_grace(session)
    await finishes_with_bye(gateway, invitation, candidate)


async def test_a_refused_offer_then_a_good_one_leaves_no_loss_behind(
    gateway: RunningGateway,
) -> None:
    invitation = await gateway.invite("relay")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(SpeechTrack())
    pc.createDataChannel(EVENTS_LABEL)
    connected = asyncio.get_running_loop().create_future()
    pc.on(
        "connectionstatechange",
        lambda: pc.connectionState == "connected" and not connected.done()
        and connected.set_result(None),
    )  # fmt: skip
    with ice.host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    good = pc.localDescription.sdp
    broken = "\r\n".join(line for line in good.split("\r\n") if not line.startswith("a=fing"))
    client = SignalingClient()
    try:
        await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
        await client.send({"type": "offer", "sdp": broken})
        assert (await client.receive())["code"] == "bad_sdp"
        answer = await client.offer(good)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await asyncio.wait_for(connected, 15)
        session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
        assert session is not None and not session.losses
        await outlives_the_grace(session)
        await client.bye()
    finally:
        await client.close()
        await pc.close()
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "bye")


async def test_a_reloaded_proxy_interview_goes_on_where_it_was_on_a_new_call(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="proxy", reconnect_grace=GRACE * 3)
    invitation = await gateway.invite("proxy")
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    assert session is not None and session.call is not None
    first_call = session.call.call_id
    sim = gateway.app[SIMULATED_UPSTREAM]
    async with asyncio.timeout(30):  # the first answer is in: the interview is under way
        while not any(role == "candidate" for role, _ in session.conversation()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    # A reload: the page, its socket and its peer connection go; the upstream ends that call.
    await candidate.connect(reconnect=True)
    assert session.call.call_id != first_call
    assert gateway.sessions.live(invitation.tenant_id, invitation.interview_id) is session
    await candidate.converse()
    assert candidate.client is not None
    await candidate.client.bye()
    await candidate.close()
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "bye")
    # The new call was given the interview so far, and its interviewer did not start again.
    calls = list(sim.calls.values())
    assert len(calls) == 2
    restored = calls[1].restored
    assert [role for role, _ in restored[:2]] == ["assistant", "user"]
    assert restored[0][1] == Script.default().turns[0].question
    await gateway.writer.flush()
    rows = await transcripts.read_transcript(
        gateway.db, invitation.tenant_id, invitation.interview_id
    )
    questions = [row.text for row in rows if row.role == "interviewer"]
    assert len(questions) == len(set(questions))  # no question asked twice
    assert questions == [t.question for t in Script.default().turns] + [Script.default().closing]
