"""Relay mode: the gateway is a full WebRTC peer on both sides of the conversation.

The browser leg answers the candidate's offer; the upstream leg is the gateway's own offer to
the AI upstream (audio plus the ``oai-events`` data channel). Audio crosses between them as Opus
packets, neither decoded nor held (``forwarding.AudioRoute``; decoded and re-encoded only for a
codec that cannot be forwarded); data-channel messages cross as they are, text in and text out,
and each upstream server event is also handed to the session (``on_server_event``) for
transcripts.

The upstream leg is built first and must connect within a deadline before the browser gets its
answer: that way a relay that cannot reach the upstream fails before the browser committed to
it, and the session can fall back to proxy mode with the same offer.

A candidate who reconnects gets a new browser leg (``reconnect``); the upstream leg and the AI
conversation carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from gateway.media import ice
from gateway.media.forwarding import AudioRoute, LegAudio
from gateway.upstream.openai import EVENTS_LABEL, RealtimeUpstream, UpstreamError

#: Messages held for a data channel that is not open yet; beyond this the oldest are dropped
#: (and counted), since an unbounded buffer is how a stuck peer eats a gateway's memory.
PENDING_MESSAGES = 256


class RelayUnavailable(Exception):
    """The relay could not be set up; the session may fall back to proxy mode."""


def rtc_configuration(servers: Sequence[dict[str, Any]]) -> RTCConfiguration:
    """Explicit ICE servers, always: with none, aiortc would ask Google's STUN server."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in servers
        ]
    )


def parse_candidate(
    candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
) -> RTCIceCandidate:
    """A browser's ``RTCIceCandidate.candidate`` line as aiortc's object (ValueError if bad)."""
    text = candidate.removeprefix("a=").removeprefix("candidate:")
    try:
        parsed = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError) as exc:
        raise ValueError(f"not an ICE candidate: {candidate[:80]!r}") from exc
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = sdp_mline_index
    return parsed


class ChannelBridge:
    """One direction of the data-channel bridge: messages to a channel that may not be open yet."""

    def __init__(self) -> None:
        self.channel: RTCDataChannel | None = None
        self._pending: deque[str | bytes] = deque(maxlen=PENDING_MESSAGES)
        self.dropped = 0

    def attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel

        @channel.on("open")
        def _flush() -> None:
            while self._pending and channel.readyState == "open":
                channel.send(self._pending.popleft())

        if channel.readyState == "open":
            _flush()

    def send(self, message: str | bytes) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(message)
            return
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(message)


class Relay:
    """The two peer connections of one relayed interview and the bridges between them."""

    def __init__(
        self,
        upstream: RealtimeUpstream,
        *,
        on_server_event: Callable[[str | bytes], None],
        on_browser_state: Callable[[str], None],
        on_upstream_state: Callable[[str], None],
        session: dict[str, Any] | None = None,
        browser_ice_servers: Sequence[dict[str, Any]] = (),
        upstream_ice_servers: Sequence[dict[str, Any]] = (),
        ice_addresses: Sequence[str] = (),
        connect_timeout: float = 5.0,
    ) -> None:
        self._upstream = upstream
        self._on_server_event = on_server_event
        self._on_browser_state = on_browser_state
        self._on_upstream_state = on_upstream_state
        self._session = session
        self._browser_ice_servers = browser_ice_servers
        self._upstream_ice_servers = upstream_ice_servers
        self._ice_addresses = ice_addresses
        self._connect_timeout = connect_timeout
        self.call_id: str | None = None
        self.browser_pc: RTCPeerConnection | None = None
        self.upstream_pc: RTCPeerConnection | None = None
        self._to_upstream_audio: AudioRoute | None = None
        self._to_browser_audio: AudioRoute | None = None
        self._upstream_audio: LegAudio | None = None
        self._to_upstream = ChannelBridge()
        self._to_browser = ChannelBridge()
        self._sinks: set[asyncio.Task[None]] = set()

    # -- set-up -------------------------------------------------------------------------

    async def start(self, offer_sdp: str) -> str:
        """Answer the browser's first offer; raises RelayUnavailable if the upstream leg fails."""
        browser_pc, browser_audio = await self._open_browser_leg(offer_sdp)
        try:
            await asyncio.wait_for(self._open_upstream_leg(browser_audio), self._connect_timeout)
        except (TimeoutError, UpstreamError, OSError, ValueError) as exc:
            reason = str(exc) or "upstream leg did not connect in time"
            await self.close()
            raise RelayUnavailable(reason) from exc
        return await self._answer_browser(browser_pc, browser_audio)

    async def reconnect(self, offer_sdp: str) -> str:
        """A new browser leg for the same upstream conversation (the candidate reconnected)."""
        old = self.browser_pc
        browser_pc, browser_audio = await self._open_browser_leg(offer_sdp)
        if old is not None:
            await old.close()
        assert self._to_upstream_audio is not None
        self._to_upstream_audio.replace_source(browser_audio)
        return await self._answer_browser(browser_pc, browser_audio)

    async def _open_browser_leg(self, offer_sdp: str) -> tuple[RTCPeerConnection, LegAudio]:
        pc = RTCPeerConnection(rtc_configuration(self._browser_ice_servers))
        self.browser_pc = pc
        tracks: list[MediaStreamTrack] = []
        pc.on("track", tracks.append)

        @pc.on("datachannel")
        def _on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label != EVENTS_LABEL:
                return
            self._to_browser.attach(channel)
            channel.on("message", self._to_upstream.send)

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc is self.browser_pc:
                self._on_browser_state(pc.connectionState)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except (ValueError, AssertionError) as exc:
            await pc.close()
            raise ValueError(f"offer rejected by the WebRTC stack: {exc}") from exc
        audio = next((t for t in tracks if t.kind == "audio"), None)
        if audio is None:
            await pc.close()
            raise ValueError("the offer carries no audio track")
        for track in tracks:
            if track.kind == "video":
                self._sink(track)
        return pc, LegAudio.of(pc, audio)

    async def _open_upstream_leg(self, browser_audio: LegAudio) -> None:
        pc = RTCPeerConnection(rtc_configuration(self._upstream_ice_servers))
        self.upstream_pc = pc
        connected = asyncio.get_running_loop().create_future()
        # The sender gets its track once the answer says which codec this leg sends.
        sender = pc.addTransceiver("audio", direction="sendrecv").sender
        channel = pc.createDataChannel(EVENTS_LABEL)
        self._to_upstream.attach(channel)
        channel.on("message", self._from_upstream)
        upstream_tracks: list[MediaStreamTrack] = []
        pc.on("track", upstream_tracks.append)

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            # "connected" (ICE and DTLS done) is enough to answer the browser: the data
            # channel opens a few round trips later and the bridge holds messages till then.
            if pc.connectionState == "connected" and not connected.done():
                connected.set_result(None)
            elif pc.connectionState == "failed" and not connected.done():
                connected.set_exception(UpstreamError("upstream leg failed to connect"))
            self._on_upstream_state(pc.connectionState)

        with ice.host_addresses(self._ice_addresses):
            await pc.setLocalDescription(await pc.createOffer())
        call = await self._upstream.create_call(pc.localDescription.sdp, self._session)
        self.call_id = call.call_id
        await pc.setRemoteDescription(RTCSessionDescription(sdp=call.answer_sdp, type="answer"))
        audio = next((t for t in upstream_tracks if t.kind == "audio"), None)
        if audio is None:
            raise UpstreamError("upstream answered without audio")
        self._upstream_audio = LegAudio.of(pc, audio)
        self._to_upstream_audio = AudioRoute(browser_audio, self._upstream_audio)
        sender.replaceTrack(self._to_upstream_audio.track)
        await connected

    async def _answer_browser(self, pc: RTCPeerConnection, browser_audio: LegAudio) -> str:
        assert self._upstream_audio is not None
        # Each browser leg gets its own route: closing a peer connection stops its senders'
        # tracks, and a reconnected browser may have negotiated another codec.
        if self._to_browser_audio is not None:
            self._to_browser_audio.track.stop()
        self._to_browser_audio = AudioRoute(self._upstream_audio, browser_audio)
        pc.addTrack(self._to_browser_audio.track)
        with ice.host_addresses(self._ice_addresses):
            await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    def _sink(self, track: MediaStreamTrack) -> None:
        """Consume a track nobody forwards (the candidate's video), so its queue stays empty.

        This is where a recorder will take the frames.
        """

        async def drain() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()

        task = asyncio.create_task(drain())
        self._sinks.add(task)
        task.add_done_callback(self._sinks.discard)

    # -- running ------------------------------------------------------------------------

    def _from_upstream(self, message: str | bytes) -> None:
        self._to_browser.send(message)
        self._on_server_event(message)

    async def add_browser_candidate(self, candidate: RTCIceCandidate | None) -> None:
        if self.browser_pc is not None:
            await self.browser_pc.addIceCandidate(candidate)

    @property
    def last_browser_media_at(self) -> float | None:
        """When the browser's audio last reached the relay (monotonic), for dead-peer checks."""
        return self._to_upstream_audio.last_media_at if self._to_upstream_audio else None

    def selected_pair(self) -> str | None:
        return ice.selected_pair_summary(self.browser_pc) if self.browser_pc else None

    async def close(self) -> None:
        for task in list(self._sinks):
            task.cancel()
        for route in (self._to_upstream_audio, self._to_browser_audio):
            if route is not None:
                route.track.stop()
        for pc in (self.browser_pc, self.upstream_pc):
            if pc is not None:
                await pc.close()
        if self.call_id is not None:
            call_id, self.call_id = self.call_id, None
            await self._upstream.hangup(call_id)
