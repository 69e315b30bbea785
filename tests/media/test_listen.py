"""Listen-in's fan-out: however many listen to a voice, its forwarder has one subscriber for
them all, every listener hears every voice, and the subscriber goes with the last listener."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from gateway.media import ice
from gateway.media.forwarding import EncodedAudioTrack, LegAudio
from gateway.media.listen import VOICES, ListenLeg
from gateway.media.relay import Relay
from gateway.sim.opus_peers import LOCAL, PacketProbe, PeerHost

from .test_fast_path import WAIT

pytestmark = pytest.mark.slow


async def observe(relay: Relay) -> tuple[RTCPeerConnection, ListenLeg, list[PacketProbe]]:
    """An observer's receive-only peer, answered by ``relay.listen_in``: a probe per voice."""
    observer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for _ in VOICES:
        observer.addTransceiver("audio", direction="recvonly")
    tracks: list[MediaStreamTrack] = []
    observer.on("track", tracks.append)
    with ice.host_addresses(LOCAL):
        await observer.setLocalDescription(await observer.createOffer())
    leg, answer = await relay.listen_in(observer.localDescription.sdp)
    await observer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    probes = [PacketProbe() for _ in VOICES]
    for probe, track in zip(probes, tracks, strict=True):
        probe.attach(LegAudio.of(observer, track))
    return observer, leg, probes


async def test_listeners_of_a_voice_share_one_subscriber_that_goes_with_the_last(
    relay: Relay, far: tuple[PeerHost, str], near: PeerHost
) -> None:
    await near.offer(relay.start, "browser")
    near.go.set()
    far[0].go.set()
    forwarders = [relay._to_upstream_audio, relay._to_browser_audio]  # candidate, interviewer
    tracks = [route.track for route in forwarders if route is not None]
    assert all(isinstance(track, EncodedAudioTrack) for track in tracks) and len(tracks) == 2
    before = [list(track.subscribers) for track in tracks]  # type: ignore[union-attr]
    observers = [await observe(relay), await observe(relay)]
    try:
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(p.wait_for(50) for _, _, probes in observers for p in probes))
        for track, was in zip(tracks, before, strict=True):
            assert len(track.subscribers) == len(was) + 1  # type: ignore[union-attr]
        for _, _, (candidate, interviewer) in observers:  # each voice's own packets
            assert {p.ssrc for p in candidate.packets} != {p.ssrc for p in interviewer.packets}
    finally:
        for pc, leg, _ in observers:
            await leg.close()
            await pc.close()
    assert [track.subscribers for track in tracks] == before  # type: ignore[union-attr]
