"""The relay's fast path: Opus crosses both legs unchanged, undecoded, consistently renumbered."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence

import aiortc.rtcrtpreceiver
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import get_decoder
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from gateway.media import ice
from gateway.media.forwarding import EncodedAudioTrack, LegAudio, MediaStats
from gateway.media.relay import Relay
from gateway.sim.opus_peers import LOCAL, PacketProbe, PeerHost
from gateway.sim.speech import SpeechTrack
from gateway.upstream.openai import EVENTS_LABEL

#: Slow (WebRTC between real peers, seconds each): left out by `scripts/test -m "not slow"`.
pytestmark = pytest.mark.slow

FLOWING = 100  # packets: two seconds of audio
WAIT = 20.0  # seconds: the limit on any one wait


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The codec of every frame any receiver in this process decodes."""
    calls: list[str] = []

    def counting(codec: RTCRtpCodecParameters):  # type: ignore[no-untyped-def]
        decoder = get_decoder(codec)
        decode = decoder.decode

        def counted(frame):  # type: ignore[no-untyped-def]
            calls.append(codec.mimeType)
            return decode(frame)

        decoder.decode = counted  # type: ignore[method-assign]
        return decoder

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", counting)
    return calls


def cyclic_run(received: Sequence[bytes], sent: Sequence[bytes]) -> bool:
    """Whether ``received`` is ``sent`` (looped) from some offset, byte for byte."""
    starts = [i for i, payload in enumerate(sent) if payload == received[0]]
    return any(
        all(payload == sent[(start + k) % len(sent)] for k, payload in enumerate(received))
        for start in starts
    )


def unbroken_runs(packets: Sequence[RtpPacket], step: int = 960) -> list[list[RtpPacket]]:
    """``packets`` cut wherever the timestamp does not advance by one frame: where the route
    took a new source (a reconnect), or dropped a packet for a sender that fell behind."""
    runs = [[packets[0]]]
    for before, after in itertools.pairwise(packets):
        if (after.timestamp - before.timestamp) % 2**32 != step:
            runs.append([])
        runs[-1].append(after)
    return runs


def assert_one_continuous_stream(packets: Sequence[RtpPacket], step: int = 960) -> None:
    """One SSRC, sequence numbers +1 each, timestamps moving forward (by ``step`` if given)."""
    assert len({p.ssrc for p in packets}) == 1
    for before, after in itertools.pairwise(packets):
        assert after.sequence_number == (before.sequence_number + 1) % 65536
        advance = (after.timestamp - before.timestamp) % 2**32
        assert 0 < advance < 2**31
        if step:
            assert advance == step


def remote_ssrc(pc: RTCPeerConnection) -> int:
    (source,) = pc.getReceivers()[0].getSynchronizationSources()
    return source.source


async def flowing(*probes: PacketProbe, count: int = FLOWING) -> None:
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*(probe.wait_for(count) for probe in probes))


async def test_opus_crosses_both_ways_byte_for_byte_without_a_decode(
    relay: Relay, far: tuple[PeerHost, str], near: PeerHost, decodes: list[str]
) -> None:
    browser = await near.offer(relay.start, "browser")
    (upstream,) = far[0].peers.values()
    near.go.set()
    far[0].go.set()
    await flowing(browser.probe, upstream.probe)

    assert relay._to_upstream_audio is not None and relay._to_upstream_audio.fast
    assert relay._to_browser_audio is not None and relay._to_browser_audio.fast
    assert decodes == []
    assert cyclic_run([p.payload for p in upstream.probe.packets], near.payloads)
    assert cyclic_run([p.payload for p in browser.probe.packets], far[0].payloads)
    for probe in (upstream.probe, browser.probe):
        assert_one_continuous_stream(probe.packets)
    # Each leg has its own SSRC: what the upstream hears is not the browser's stream id.
    assert relay.browser_pc is not None and relay.upstream_pc is not None
    assert upstream.probe.packets[0].ssrc != remote_ssrc(relay.browser_pc)
    assert browser.probe.packets[0].ssrc != remote_ssrc(relay.upstream_pc)


async def test_a_reconnected_browser_keeps_the_upstream_stream_going(
    relay: Relay, far: tuple[PeerHost, str], near: PeerHost, decodes: list[str]
) -> None:
    first = await near.offer(relay.start, "first")
    (upstream,) = far[0].peers.values()
    near.go.set()
    far[0].go.set()
    await flowing(first.probe, upstream.probe)
    heard_before = len(upstream.probe.packets)
    media_before = relay.last_browser_media_at

    second = await near.offer(relay.reconnect, "second")
    await flowing(second.probe)
    await flowing(upstream.probe, count=heard_before + FLOWING)

    assert decodes == []
    assert relay.last_browser_media_at is not None and media_before is not None
    assert relay.last_browser_media_at > media_before
    # The upstream saw one stream throughout: same SSRC, no sequence gap, time moving on.
    assert_one_continuous_stream(upstream.probe.packets, step=0)
    # Byte for byte between the seams: the upstream's stream has one where the new browser's
    # packets took over, and one more for each packet a route dropped because its sender fell
    # behind (a starved machine); nothing else may break a run.
    routes = relay._to_upstream_audio, relay._to_browser_audio
    assert routes[0] is not None and routes[1] is not None
    for route, packets, sent, seams in (
        (routes[0], upstream.probe.packets, near.payloads, 1),
        (routes[1], second.probe.packets, far[0].payloads, 0),
    ):
        assert isinstance(route.track, EncodedAudioTrack)
        runs = unbroken_runs(packets)
        assert len(runs) <= 1 + seams + route.track.dropped, [len(run) for run in runs]
        assert all(cyclic_run([p.payload for p in run], sent) for run in runs)


async def test_a_codec_it_cannot_forward_falls_back_to_transcoding(
    relay: Relay,
    far: tuple[PeerHost, str],
    decodes: list[str],
    caplog: pytest.LogCaptureFixture,
    media_stats: MediaStats,
) -> None:
    fallbacks_before = media_stats.transcode_fallbacks["audio/PCMU"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver(SpeechTrack(), direction="sendrecv")
        (pcmu,) = [
            c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/PCMU"
        ]
        transceiver.setCodecPreferences([pcmu])
        pc.createDataChannel(EVENTS_LABEL)
        tracks: list[MediaStreamTrack] = []
        pc.on("track", tracks.append)
        with (
            ice.host_addresses(LOCAL),
            caplog.at_level(logging.WARNING, "gateway.media.forwarding"),
        ):
            await pc.setLocalDescription(await pc.createOffer())
            answer = await relay.start(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        probe = PacketProbe()
        probe.attach(LegAudio.of(pc, tracks[0]))
        (upstream,) = far[0].peers.values()
        far[0].go.set()
        await flowing(probe, upstream.probe)
    finally:
        await pc.close()

    assert relay._to_upstream_audio is not None and not relay._to_upstream_audio.fast
    assert relay._to_browser_audio is not None and not relay._to_browser_audio.fast
    assert media_stats.transcode_fallbacks["audio/PCMU"] == fallbacks_before + 2
    assert "cannot be forwarded" in caplog.text
    assert {p.payload_type for p in probe.packets} == {0}  # PCMU reached the browser
    assert "audio/PCMU" in decodes and "audio/opus" in decodes  # the relay transcoded
    assert_one_continuous_stream(upstream.probe.packets, step=0)
