"""Relay mode: the gateway is a full WebRTC peer on both sides of the conversation.

The browser leg answers the candidate's offer; the upstream leg is the gateway's own offer to
the AI upstream (audio plus the ``oai-events`` data channel), over either upstream contract
(Realtime or GPT-Live: ``UpstreamClient``), which name the channel alike. Audio crosses between
them as Opus packets, neither decoded nor held (``forwarding.AudioRoute``; decoded and re-
encoded only for a codec that cannot be forwarded); data-channel messages cross as they are,
text in and text out, and each upstream server event is also handed to the session
(``on_server_event``) for transcripts.

The upstream leg is built first and must connect within a deadline before the browser gets its
answer: that way a relay that cannot reach the upstream fails before the browser committed to
it, and the session can fall back to proxy mode with the same offer.

A candidate who reconnects gets a new browser leg (``reconnect``); the upstream leg and the AI
conversation carry on. While the candidate is away the session tells the relay
(``candidate_away``): the interviewer's turn is stopped, and once they are back
(``candidate_back``) it asks its last question again, in the upstream contract's client
events. What happens to the legs reaches the session as ``CallListener`` events: the browser
leg connected, lost (failed, closed by the candidate, or silent: see
``watchdog.SilenceWatchdog``) or back, the upstream leg gone (failed, closed, or silent: no
audio packet and no event for ``upstream_timeout`` seconds, by the same watchdog). Legs the
relay closes itself (the old leg on a reconnect, a refused offer, the whole relay on close)
report nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.media import aiortc_internals, ice, video
from gateway.media.datachannel import ChannelBridge
from gateway.media.forwarding import AudioRoute, EncodedAudioTrack, LegAudio, MediaStats
from gateway.media.host_sockets import HostSockets
from gateway.media.listen import ListenLeg
from gateway.media.quality import LegMeter, TurnTimer
from gateway.media.watchdog import SilenceWatchdog
from gateway.recording.recorder import InterviewRecording, Participant
from gateway.upstream.call import BadOffer, CallListener, CallMode, CallUnavailable
from gateway.upstream.integrity import ClientEventPolicy, SessionGuard
from gateway.upstream.openai import EVENTS_LABEL, UpstreamClient, UpstreamError, merge_session
from signaling.sdp import IceCandidate, with_explicit_directions, with_opus_parameters
from storage.quality import QualityReport
from storage.transcripts import Role

log = logging.getLogger(__name__)


def rtc_configuration(servers: Sequence[dict[str, Any]]) -> RTCConfiguration:
    """Explicit ICE servers, always: with none, aiortc would ask Google's STUN server."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in servers
        ]
    )


def _with_opus_parameters(
    description: RTCSessionDescription, offer: RTCSessionDescription | None = None
) -> RTCSessionDescription:
    """A leg's own description asking for Opus in-band FEC (``sdp.with_opus_parameters``):
    packets cross unchanged, so both legs must ask for it."""
    sdp = with_opus_parameters(description.sdp, offer.sdp if offer is not None else None)
    return RTCSessionDescription(sdp=sdp, type=description.type)


@dataclass(frozen=True)
class RelayOptions:
    """How a relay's legs are built; one per gateway, shared by its relays."""

    browser_ice_servers: Sequence[dict[str, Any]] = ()
    upstream_ice_servers: Sequence[dict[str, Any]] = ()
    #: local addresses both legs gather on (empty: the process default)
    ice_addresses: Sequence[str] = ()
    #: where both legs' host candidates get their sockets (None: a random port each)
    ice_sockets: HostSockets | None = None
    #: seconds the upstream leg has to connect before the relay counts as unavailable
    connect_timeout: float = 5.0
    #: seconds without the candidate's audio, once connected, before the peer counts as lost
    peer_timeout: float = 5.0
    #: seconds without an audio packet or an event from the upstream, once its leg is
    #: connected, before the upstream counts as gone (``upstream_silent``)
    upstream_timeout: float = 5.0
    #: which of the browser's client events cross to the upstream
    client_events: ClientEventPolicy = field(default_factory=ClientEventPolicy)
    stats: MediaStats = field(default_factory=MediaStats)


class Relay:
    """The two peer connections of one relayed interview and the bridges between them."""

    mode: CallMode = "relay"

    def __init__(
        self,
        upstream: UpstreamClient,
        listener: CallListener,
        *,
        options: RelayOptions,
        session: dict[str, Any] | None = None,
        recording: InterviewRecording | None = None,
    ) -> None:
        self._upstream = upstream
        #: where both voices are recorded, when this interview is (the packets the routes send)
        self._recording = recording
        self._listener = listener
        self._options = options
        self._session = session
        self.call_id: str | None = None
        self.browser_pc: RTCPeerConnection | None = None
        self.upstream_pc: RTCPeerConnection | None = None
        self._to_upstream_audio: AudioRoute | None = None
        self._to_browser_audio: AudioRoute | None = None
        self._upstream_audio: LegAudio | None = None
        self._to_upstream = ChannelBridge()
        self._to_browser = ChannelBridge()
        self._sinks: set[asyncio.Task[None]] = set()
        #: the candidate's video frames, each browser leg's, when recorded
        self._video: list[video.VideoFrames] = []
        self._hangups: set[asyncio.Task[bool]] = set()
        #: when the upstream last sent an event, and (a browser leg ago) audio
        self._upstream_event_at: float | None = None
        self._upstream_audio_before: float | None = None
        #: observers' receive-only peers, each fed both voices' packets (``media.listen``)
        self._listeners: set[ListenLeg] = set()
        #: call quality: each leg's network, each turn's response latency (``media.quality``)
        self._meters = {"browser": LegMeter("browser"), "upstream": LegMeter("upstream")}
        self._turns = TurnTimer()
        #: set once the upstream leg is up: only then is its loss the session's business
        self._started = False
        self._closing = False
        #: the candidate is back from an absence; the repeat waits for a connected leg
        self._repeat_pending = False
        self._guard = SessionGuard(
            upstream.effective_session(session),
            upstream.guarded_fields,
            send=self._to_upstream.send,
            report=lambda fields: listener.integrity_event("session_tampered", ",".join(fields)),
        )
        self.watchdog = SilenceWatchdog(
            options.peer_timeout,
            lambda: self.last_browser_media_at,
            on_silent=lambda: listener.peer_lost("peer_silent"),
            on_back=listener.peer_back,
        )
        self.upstream_watchdog = SilenceWatchdog(
            options.upstream_timeout,
            lambda: self.last_upstream_traffic_at,
            on_silent=lambda: listener.upstream_failed("upstream_silent"),
            on_back=lambda: None,  # too late: the session ends on the silence
        )

    # -- set-up -------------------------------------------------------------------------

    async def start(self, offer_sdp: str, *, carry_over: Sequence[tuple[Role, str]] = ()) -> str:
        """Answer the browser's first offer; raises CallUnavailable if the upstream leg fails.
        ``carry_over``: an earlier conversation of the interview (a restarted gateway's), which
        the new upstream call is given as the proxy gives it (``UpstreamClient.carry_over``)."""
        browser_pc, browser_audio = await self._open_browser_leg(offer_sdp)
        self.browser_pc = browser_pc
        try:
            await asyncio.wait_for(
                self._open_upstream_leg(browser_audio, carry_over), self._options.connect_timeout
            )
        except (TimeoutError, UpstreamError, OSError, ValueError) as exc:
            reason = str(exc) or "upstream leg did not connect in time"
            await self.close()
            raise CallUnavailable(reason, reason="relay_unavailable") from exc
        except BaseException:
            await self.close()
            raise
        self._started = True
        self.upstream_watchdog.start()
        try:  # the browser leg's gathering can fail too (IcePortsExhausted)
            return await self._answer_browser(browser_pc, browser_audio)
        except BaseException:
            await self.close()
            raise

    async def reconnect(self, offer_sdp: str) -> str:
        """A new browser leg for the same upstream conversation (the candidate reconnected)."""
        browser_pc, browser_audio = await self._open_browser_leg(offer_sdp)
        old, self.browser_pc = self.browser_pc, browser_pc
        self.watchdog.stop()  # counted again once the new leg connects
        if old is not None:
            await old.close()
        assert self._to_upstream_audio is not None
        self._to_upstream_audio.replace_source(browser_audio)
        self._record("candidate", self._to_upstream_audio)
        return await self._answer_browser(browser_pc, browser_audio)

    async def _open_browser_leg(self, offer_sdp: str) -> tuple[RTCPeerConnection, LegAudio]:
        """A browser leg for ``offer_sdp``; it becomes the current leg only once it parsed."""
        pc = RTCPeerConnection(rtc_configuration(self._options.browser_ice_servers))
        tracks: list[MediaStreamTrack] = []
        pc.on("track", tracks.append)

        @pc.on("datachannel")
        def _on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label != EVENTS_LABEL:
                return
            self._to_browser.attach(channel)
            channel.on("message", self._from_browser)

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc is self.browser_pc and not self._closing:
                self._browser_state(pc)

        try:
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=with_explicit_directions(offer_sdp), type="offer")
            )
        except (ValueError, AssertionError) as exc:
            await pc.close()
            raise BadOffer(f"offer rejected by the WebRTC stack: {exc}") from exc
        audio = next((t for t in tracks if t.kind == "audio"), None)
        if audio is None:
            await pc.close()
            raise BadOffer("the offer carries no audio track")
        for track in tracks:
            if track.kind == "video":
                self._take_video(pc, track)
        return pc, LegAudio.of(pc, audio)

    def _browser_state(self, pc: RTCPeerConnection) -> None:
        state = pc.connectionState
        if state == "connected":
            self.watchdog.start()
            self._listener.peer_connected(ice.selected_pair_summary(pc))
            self._repeat_when_connected()
        elif state in ("failed", "closed"):
            self.watchdog.stop()
            self._listener.peer_lost(f"peer_{state}")

    async def _open_upstream_leg(
        self, browser_audio: LegAudio, carry_over: Sequence[tuple[Role, str]]
    ) -> None:
        pc = RTCPeerConnection(rtc_configuration(self._options.upstream_ice_servers))
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
            state = pc.connectionState
            if state == "connected" and not connected.done():
                connected.set_result(None)
            elif state == "failed" and not connected.done():
                connected.set_exception(UpstreamError("upstream leg failed to connect"))
            elif state in ("failed", "closed") and self._started and not self._closing:
                self._listener.upstream_failed(f"upstream_{state}")

        with ice.host_addresses(self._options.ice_addresses, self._options.ice_sockets):
            offer = await pc.createOffer()
            await pc.setLocalDescription(_with_opus_parameters(offer))
        carried = self._upstream.carry_over(carry_over)
        call = await self._upstream.create_call(
            pc.localDescription.sdp, merge_session(self._session, carried.session)
        )
        self.call_id = call.call_id
        if carried.sideband_events:  # before the leg connects, as the proxy does
            sideband = await self._upstream.open_sideband(call.call_id)
            try:
                for event in carried.sideband_events:
                    await sideband.send(event)
            finally:
                await sideband.close()
        await pc.setRemoteDescription(
            RTCSessionDescription(sdp=with_explicit_directions(call.answer_sdp), type="answer")
        )
        audio = next((t for t in upstream_tracks if t.kind == "audio"), None)
        if audio is None:
            raise UpstreamError("upstream answered without audio")
        self._upstream_audio = LegAudio.of(pc, audio)
        self._to_upstream_audio = AudioRoute(
            browser_audio, self._upstream_audio, self._options.stats
        )
        sender.replaceTrack(self._to_upstream_audio.track)
        self._record("candidate", self._to_upstream_audio)
        await connected

    async def _answer_browser(self, pc: RTCPeerConnection, browser_audio: LegAudio) -> str:
        assert self._upstream_audio is not None
        # Each browser leg gets its own route: closing a peer connection stops its senders'
        # tracks, and a reconnected browser may have negotiated another codec.
        if self._to_browser_audio is not None:
            self._upstream_audio_before = self._to_browser_audio.last_media_at
            self._to_browser_audio.track.stop()
        self._to_browser_audio = AudioRoute(
            self._upstream_audio, browser_audio, self._options.stats
        )
        pc.addTrack(self._to_browser_audio.track)
        self._record("interviewer", self._to_browser_audio)
        with ice.host_addresses(self._options.ice_addresses, self._options.ice_sockets):
            answer = await pc.createAnswer()
            await pc.setLocalDescription(_with_opus_parameters(answer, pc.remoteDescription))
        return pc.localDescription.sdp

    async def quality(self) -> QualityReport:
        """Both legs now, and the turns measured since the last call (``media.quality``)."""
        legs = [
            await meter.sample(pc)
            for meter, pc in (
                (self._meters["browser"], self.browser_pc),
                (self._meters["upstream"], self.upstream_pc),
            )
            if pc is not None
        ]
        return QualityReport(legs, self._turns.take())

    async def listen_in(
        self, offer_sdp: str, on_lost: Callable[[], None] | None = None
    ) -> tuple[ListenLeg, str]:
        """An observer's receive-only peer for ``offer_sdp``, fed both voices as they are
        forwarded, and its answer; ``BadOffer`` for an offer it cannot take. ``on_lost``:
        the peer stopped answering (its connection failed)."""
        leg = ListenLeg(
            rtc_configuration(self._options.browser_ice_servers),
            self._options.ice_addresses,
            ice_sockets=self._options.ice_sockets,
            on_close=self._listeners.discard,
            on_lost=on_lost,
        )
        try:
            answer = await leg.answer(offer_sdp)
        except BaseException:
            await leg.close()
            raise
        self._listeners.add(leg)
        for participant, route in (
            ("candidate", self._to_upstream_audio),
            ("interviewer", self._to_browser_audio),
        ):
            if route is not None and isinstance(route.track, EncodedAudioTrack):
                leg.follow(participant, route.track)  # type: ignore[arg-type]
        return leg, answer

    def _record(self, participant: Participant, route: AudioRoute) -> None:
        """Record the packets ``route`` sends as ``participant``'s voice, if recording; a
        route that decodes (``AudioRoute.fast`` false) is not recorded, and says so. Listeners
        follow the route too."""
        if isinstance(route.track, EncodedAudioTrack):
            for leg in self._listeners:
                leg.follow(participant, route.track)
            timer = self._turns.interviewer_packet
            if participant == "interviewer" and timer not in route.track.subscribers:
                route.track.subscribers.append(timer)
        if self._recording is None:
            return
        if isinstance(route.track, EncodedAudioTrack):
            self._recording.follow(participant, route.track)
        else:
            log.warning("the %s's audio is not recorded: it is not forwarded as Opus", participant)

    def _take_video(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        """The candidate's video: recorded as its frames came (``media.video``), when this
        interview is recorded and the leg negotiated VP8 or H.264; otherwise dropped as it
        comes, never decoded (or, on an aiortc whose internals are not known, drained)."""
        transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
        codecs = aiortc_internals.negotiated_codecs(transceiver)
        codec = video.recordable(codecs[0]) if codecs else None
        if self._recording is not None and codec is not None:
            frames = video.VideoFrames(transceiver.receiver, codec)
            self._video.append(frames)
            self._recording.follow_video("candidate", frames)
            return
        if self._recording is not None:
            name = codecs[0].mimeType if codecs else "unknown"
            log.warning("the candidate's video is not recorded: %s is not VP8 or H.264", name)
        if aiortc_internals.version_supported():
            aiortc_internals.drop_frames(transceiver.receiver)
        else:
            self._sink(track)

    def _sink(self, track: MediaStreamTrack) -> None:
        """Consume a track nobody forwards or records, so its queue stays empty."""

        async def drain() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()

        task = asyncio.create_task(drain())
        self._sinks.add(task)
        task.add_done_callback(self._sinks.discard)

    # -- running ------------------------------------------------------------------------

    def _from_browser(self, message: str | bytes) -> None:
        refused = self._options.client_events.refusal(message)
        if refused is None:
            self._to_upstream.send(message)
        else:
            self._listener.integrity_event("client_event_refused", refused)

    def _from_upstream(self, message: str | bytes) -> None:
        self._upstream_event_at = time.monotonic()
        self._to_browser.send(message)
        self._turns.upstream_event(message)
        self._guard.observe(message)
        self._listener.server_event(message, "relay")

    def candidate_away(self) -> None:
        """Stop the interviewer's turn while the candidate is gone (the contract's client
        events, ``UpstreamClient.pause_events``). They go on the upstream leg's own channel,
        never through the browser's allowlist: they are the gateway's, not the candidate's."""
        for event in self._upstream.pause_events:
            self._to_upstream.send(event)

    def candidate_back(self) -> None:
        """Have the interviewer repeat its last question (``UpstreamClient.repeat_events``),
        once the browser leg is connected: a rejoin's new leg may still be setting up, and
        the question must reach the candidate's ears, not a leg that is not there yet."""
        self._repeat_pending = True
        self._repeat_when_connected()

    def _repeat_when_connected(self) -> None:
        pc = self.browser_pc
        if self._repeat_pending and pc is not None and pc.connectionState == "connected":
            self._repeat_pending = False
            for event in self._upstream.repeat_events:
                self._to_upstream.send(event)

    async def add_candidate(self, candidate: IceCandidate | None) -> None:
        """A trickled browser candidate; ``BadOffer`` if aiortc cannot read it."""
        if self.browser_pc is None:
            return
        try:
            parsed = ice.rtc_candidate(candidate) if candidate is not None else None
        except ice.CandidateError as exc:
            raise BadOffer(str(exc)) from None
        await self.browser_pc.addIceCandidate(parsed)

    @property
    def last_browser_media_at(self) -> float | None:
        """When the browser's audio last reached the relay (monotonic), for dead-peer checks."""
        return self._to_upstream_audio.last_media_at if self._to_upstream_audio else None

    @property
    def last_upstream_traffic_at(self) -> float | None:
        """When the upstream last sent anything, an audio packet or an event (monotonic)."""
        route = self._to_browser_audio
        heard = (route.last_media_at if route else None, self._upstream_audio_before)
        return max((t for t in (*heard, self._upstream_event_at) if t is not None), default=None)

    async def close(self) -> None:
        """Hang up both legs and the upstream call; reports nothing to the listener."""
        self._closing = True
        self.watchdog.stop()
        self.upstream_watchdog.stop()
        if self._recording is not None:
            self._recording.close()
        for task in list(self._sinks):
            task.cancel()
        for frames in self._video:
            frames.stop()
        for leg in list(self._listeners):
            await leg.close()
        for route in (self._to_upstream_audio, self._to_browser_audio):
            if route is not None:
                route.track.stop()
        for pc in (self.browser_pc, self.upstream_pc):
            if pc is not None:
                await pc.close()
        if self.call_id is not None:
            call_id, self.call_id = self.call_id, None
            hangup = asyncio.ensure_future(self._upstream.hangup(call_id))
            if self.upstream_watchdog.silent:
                # A silent upstream may be frozen: the end does not wait for its HTTP timeout.
                self._hangups.add(hangup)
                hangup.add_done_callback(self._hangups.discard)
            else:
                await hangup
