"""The relay's hot path: forwarded packets written through the sender at once, SRTP handled as
it arrives, and what RTCP and the statistics read still counted."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

from gateway.media import aiortc_internals
from gateway.media.forwarding import EncodedAudioTrack, PacketQueueTrack
from gateway.media.relay import Relay
from gateway.sim.opus_peers import PeerHost

from .test_fast_path import WAIT, flowing

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


async def remote_sender_report(pc: RTCPeerConnection) -> object:
    """The stats of the first RTCP sender report ``pc``'s receiver got (they come every
    0.5-1.5 s): what the relay's sender said it had sent."""
    async with asyncio.timeout(WAIT):
        while True:
            report = await pc.getReceivers()[0].getStats()
            found = [s for s in report.values() if s.type == "remote-outbound-rtp"]
            if found and found[0].packetsSent > 0:
                return found[0]
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_forwarded_packets_skip_the_senders_loop_and_are_counted_for_rtcp_and_stats(
    relay: Relay, far: tuple[PeerHost, str], near: PeerHost
) -> None:
    browser = await near.offer(relay.start, "browser")
    (upstream,) = far[0].peers.values()
    near.go.set()
    far[0].go.set()
    await flowing(browser.probe, upstream.probe)

    for route in (relay._to_upstream_audio, relay._to_browser_audio):
        assert route is not None and isinstance(route.track, EncodedAudioTrack)
        assert route.track._writer is not None  # written through, nothing queued for a loop
        assert not route.track._queue and not route.track._held
    assert relay.upstream_pc is not None
    (sender,) = relay.upstream_pc.getSenders()
    stats = {s.type: s for s in (await sender.getStats()).values()}
    assert stats["outbound-rtp"].packetsSent >= len(upstream.probe.packets) - 5
    assert stats["transport"].packetsSent >= stats["outbound-rtp"].packetsSent

    # The far end's sender reports carry the writer's counts and a wall-clock NTP time.
    report = await remote_sender_report(upstream.pc)
    assert 0 < report.packetsSent <= len(upstream.probe.packets) + 50  # type: ignore[attr-defined]
    skew = report.remoteTimestamp - datetime.datetime.now(datetime.UTC)  # type: ignore[attr-defined]
    assert abs(skew.total_seconds()) < 30


async def test_a_track_taken_off_its_sender_goes_back_to_its_queue() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        track = PacketQueueTrack()
        sender = pc.addTrack(track)
        track.write_through(sender, OPUS)
        track.send(b"opus", 0)  # the sender has not started: held for it
        assert len(track._held) == 1 and not track._queue
        sender.replaceTrack(None)
        track.send(b"opus", 960)  # no longer the sender's: the held and this one are dropped
        assert track.dropped == 2
        track.send(b"opus", 1920)
        async with asyncio.timeout(WAIT):
            assert (await track.recv()).pts == 1920  # whatever reads it reads the queue
    finally:
        await pc.close()


async def test_no_writer_where_the_senders_loop_must_send() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTrack(PacketQueueTrack())
        nack = RTCRtpCodecParameters(
            mimeType="audio/opus", clockRate=48000, payloadType=111, rtcpFeedback=[]
        )
        assert aiortc_internals.RtpWriter.for_sender(sender, nack) is not None
        nack.rtcpFeedback.append(RTCRtcpFeedback(type="nack"))  # retransmits from its history
        assert aiortc_internals.RtpWriter.for_sender(sender, nack) is None
        assert aiortc_internals.RtpWriter.for_sender(sender, None) is None
    finally:
        await pc.close()


async def test_a_coroutine_run_now_that_waits_is_carried_on_to_its_end() -> None:
    gate = asyncio.get_running_loop().create_future()
    ended = asyncio.Event()
    steps: list[str] = []

    async def handler() -> None:
        steps.append("ran now")
        steps.append(await gate)
        await asyncio.sleep(0)
        steps.append("ended")
        ended.set()

    aiortc_internals._run_now(handler())
    assert steps == ["ran now"]
    gate.set_result("resumed")
    await asyncio.wait_for(ended.wait(), WAIT)
    assert steps == ["ran now", "resumed", "ended"]
