"""Listen-in: an observer's receive-only peer connection that gets both voices of a relayed
interview as two tracks of forwarded Opus packets (the candidate's first, the interviewer's
second), never decoded or mixed on the gateway, and never sending anything into the interview.

Each voice is a ``VoiceFeed``, fed by the ``Listeners`` of the relay's forwarder for that
voice: one subscriber of the forwarder (the hook the recorder uses) for all its listeners. A
subscriber runs on the forwarding path, so it never waits: it hands the packet on, once for
every listener, at the event loop's next turn, so that every forwarder's own send that the
packet's arrival woke (this session's and any other's) goes out before a listener's copy, and
then each copy is written through its listen leg's sender as it comes
(``PacketQueueTrack.write_through``: ``RtpWriter``, the writer of the relay's own forwarded
packets), a few held in a bounded deque only while that sender cannot send. A listener that
cannot keep up loses its oldest packets, the interview loses nothing. The leg takes its host
sockets where the relay's other legs do (the UDP mux of ``GATEWAY_ICE_UDP_PORT``, a port
range). When the relay replaces a forwarder (the candidate reconnected and got a new browser
leg), ``follow`` moves the feed to the new one and keeps its timestamps running on.

A listener that stops answering (its browser froze, its network went) fails ICE consent
freshness (RFC 7675: a check every ~5 s, each retransmitted for up to 7.5 s, six in a row
unanswered: about 75 s, ``media.ice``): the leg's
connection turns ``failed`` (or ``closed``, when the peer's DTLS closed) and ``on_lost`` tells
its owner, who hangs it up and tells the observer (``listen_lost``). Until then its packets
cost a send each, and nobody waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Sequence

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from gateway.media import aiortc_internals, ice
from gateway.media.forwarding import (
    MIN_STEP,
    EncodedAudioTrack,
    PacketQueueTrack,
    forwardable,
)
from gateway.media.host_sockets import HostSockets
from gateway.recording.recorder import Participant
from gateway.upstream.call import BadOffer
from signaling.sdp import IceCandidate, with_explicit_directions

log = logging.getLogger(__name__)

#: The order of the listen leg's audio m-lines.
VOICES: tuple[Participant, ...] = ("candidate", "interviewer")


class Listeners:
    """Every listener of one forwarder behind one subscriber of it: each packet (its payload, as
    the forwarder sent it) is handed on in one call at the loop's next turn, however many listen
    (a call and a copy per listener and packet were a fifth of a listener's cost)."""

    def __init__(self, source: EncodedAudioTrack) -> None:
        self._source = source
        self.feeds: list[VoiceFeed] = []
        source.subscribers.append(self._push)

    @classmethod
    def of(cls, source: EncodedAudioTrack) -> Listeners:
        listeners = _LISTENERS.get(source)
        if listeners is None:
            listeners = _LISTENERS[source] = cls(source)
        return listeners

    def _push(self, payload: bytes, pts: int) -> None:
        asyncio.get_running_loop().call_soon(self._forward, payload, pts)

    def _forward(self, payload: bytes, pts: int) -> None:
        for feed in self.feeds:
            feed.forward(payload, pts)

    def remove(self, feed: VoiceFeed) -> None:
        """``feed`` listens no more; the last one gone, so does the subscriber."""
        if feed in self.feeds:
            self.feeds.remove(feed)
        if not self.feeds:
            with contextlib.suppress(ValueError):
                self._source.subscribers.remove(self._push)
            _LISTENERS.pop(self._source, None)


#: each forwarder's listeners, while it has any
_LISTENERS: weakref.WeakKeyDictionary[EncodedAudioTrack, Listeners] = weakref.WeakKeyDictionary()


class VoiceFeed(PacketQueueTrack):
    """One voice for one listener: the packets its forwarder sends, a few held at most."""

    def __init__(self) -> None:
        super().__init__()
        self._source: EncodedAudioTrack | None = None
        #: added to a source's pts, so that a new source goes on where the last one stopped
        self._offset = 0
        self._last_pts: int | None = None
        self._rebase = False
        self.packets = 0

    def follow(self, source: EncodedAudioTrack) -> None:
        """Take ``source``'s packets from now on (and no longer the previous source's)."""
        if source is self._source:
            return
        self._leave()
        self._source = source
        self._rebase = self._last_pts is not None
        Listeners.of(source).feeds.append(self)

    def forward(self, payload: bytes, pts: int) -> None:
        """Send one of the source's packets (``pts`` on the source's clock)."""
        if self._rebase:
            assert self._last_pts is not None
            self._offset = self._last_pts + MIN_STEP - pts
            self._rebase = False
        pts += self._offset
        self._last_pts = pts
        self.send(payload, pts)
        self.packets += 1

    def _leave(self) -> None:
        if self._source is not None:
            listeners = _LISTENERS.get(self._source)
            if listeners is not None:
                listeners.remove(self)
            self._source = None

    def stop(self) -> None:
        self._leave()
        super().stop()


class ListenLeg:
    """One observer's peer connection: receive-only for the observer, send-only for us."""

    def __init__(
        self,
        configuration: RTCConfiguration,
        ice_addresses: Sequence[str],
        *,
        ice_sockets: HostSockets | None = None,
        on_close: Callable[[ListenLeg], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.pc = RTCPeerConnection(configuration)
        self._ice_addresses = ice_addresses
        #: the relay's host sockets (the UDP mux, a port range), as its other legs have them
        self._ice_sockets = ice_sockets
        self.feeds: dict[Participant, VoiceFeed] = {voice: VoiceFeed() for voice in VOICES}
        self._on_close = on_close
        self._on_lost = on_lost
        self._closed = False
        self.pc.on("connectionstatechange", self._state)

    def _state(self) -> None:
        # failed: consent expired; closed: the peer's DTLS said goodbye (not through us)
        if self.pc.connectionState in ("failed", "closed") and not self._closed:
            log.info("listen-in peer %s", self.pc.connectionState)
            if self._on_lost is not None:
                self._on_lost()

    async def answer(self, offer_sdp: str) -> str:
        """Answer an offer of (at least) two audio m-lines that receive Opus; ``BadOffer``
        for anything else."""
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=with_explicit_directions(offer_sdp), type="offer")
            )
        except (ValueError, AssertionError) as exc:
            raise BadOffer(f"offer rejected by the WebRTC stack: {exc}") from exc
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if len(audio) < len(VOICES):
            raise BadOffer(
                "a listen-in offer has two audio m-lines: the candidate, the interviewer"
            )
        for transceiver, voice in zip(audio, VOICES, strict=False):
            codecs = aiortc_internals.negotiated_codecs(transceiver)
            if not forwardable(codecs[0] if codecs else None):
                raise BadOffer("listen-in audio is Opus only")
            # send-only whatever the offer says: nothing the observer sends is ever read
            transceiver.direction = "sendonly"
            transceiver.sender.replaceTrack(self.feeds[voice])
            self.feeds[voice].write_through(transceiver.sender, codecs[0])
        with ice.host_addresses(self._ice_addresses, self._ice_sockets):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    def follow(self, voice: Participant, source: EncodedAudioTrack) -> None:
        self.feeds[voice].follow(source)

    async def add_candidate(self, candidate: IceCandidate | None) -> None:
        try:
            parsed = ice.rtc_candidate(candidate) if candidate is not None else None
        except ice.CandidateError as exc:
            raise BadOffer(str(exc)) from None
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for feed in self.feeds.values():
            feed.stop()
        await self.pc.close()
        if self._on_close is not None:
            self._on_close(self)
