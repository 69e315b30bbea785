"""Relayed audio that crosses as Opus packets: no decode, no re-encode, no jitter buffer.

aiortc's stock relay decodes in the receiver, holds ~80 ms in the receiver's jitter buffer and
re-encodes in the sender (~20 % of a core per session). When both legs negotiated Opus, the
relay instead taps the receiver (``aiortc_internals.tap_receiver``) and hands each payload as an
``av.Packet`` to the other leg's sender, which only packetizes it. Each leg's sender writes its
own SSRC and sequence numbers; ``EncodedAudioTrack`` writes the timestamps: the source's own
spacing (so the far end's jitter buffer sees the source's real timing, gaps included), rebased so
that they run on without a jump when the source changes (a candidate's reconnect). Late and
duplicate packets are dropped here rather than sent out of timestamp order.

For anything else (a leg that negotiated G.711, say) ``AudioRoute`` falls back to the decoded path
(``tracks.ForwardedTrack``) with a warning, counted in ``MediaStats.transcode_fallbacks``.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiortc
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from av.packet import Packet

from gateway.media import aiortc_internals
from gateway.media.tracks import ForwardedTrack

log = logging.getLogger(__name__)

OPUS_RATE = 48000
TIME_BASE = fractions.Fraction(1, OPUS_RATE)
#: Packets held for a sender that fell behind; beyond this the oldest go (and are counted).
#: 16 packets are 320 ms: more would only be latency.
CAPACITY = 16
#: The least timestamp step between two sources' packets: one 20 ms Opus frame.
MIN_STEP = 960
_HALF = 1 << 31
_WRAP = 1 << 32


@dataclass
class MediaStats:
    """Counters of what the media paths did, kept by their owner and read by the metrics."""

    #: relayed audio routes that had to decode and re-encode, by the codec that forced it
    transcode_fallbacks: Counter[str] = field(default_factory=Counter)


def forwardable(codec: RTCRtpCodecParameters | None) -> bool:
    """Whether packets of ``codec`` can cross unchanged (Opus, on an aiortc this module knows)."""
    return (
        codec is not None
        and codec.mimeType.lower() == "audio/opus"
        and codec.clockRate == OPUS_RATE
        and aiortc_internals.version_supported()
    )


@dataclass(frozen=True, slots=True)
class LegAudio:
    """One leg's audio line: the peer's track, its receiver, our sender, the negotiated codec.

    The codec is the first negotiated one: what our sender sends, and (the answer keeping the
    offer's order) what the peer prefers to send.
    """

    track: MediaStreamTrack
    receiver: RTCRtpReceiver
    sender: RTCRtpSender
    codec: RTCRtpCodecParameters | None

    @classmethod
    def of(cls, pc: RTCPeerConnection, track: MediaStreamTrack) -> LegAudio:
        """The line of ``track``, a remote track of ``pc`` (once the remote description is set)."""
        transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
        codecs = aiortc_internals.negotiated_codecs(transceiver)
        return cls(track, transceiver.receiver, transceiver.sender, codecs[0] if codecs else None)


class PacketQueueTrack(MediaStreamTrack):
    """A sender's audio track of pre-encoded packets that a callback hands in: a queue of
    ``CAPACITY`` that the sender drains. A sender that fell behind loses the oldest packets,
    counted in ``dropped``: latency is worse than a gap.

    Bound to its sender (``write_through``), the track instead hands each packet to it at once
    (``aiortc_internals.RtpWriter``: packetized, protected and written in the callback that
    brought it, no queue and no hop to the sender's loop, which then only waits on the track
    until it stops). Only packets that come before the sender can send wait, up to
    ``CAPACITY``, and go out first once it can.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[Packet] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._writer: aiortc_internals.RtpWriter | None = None
        #: write-through packets (payload, pts) waiting for the sender to be able to send
        self._held: deque[tuple[bytes, int]] = deque()
        self.dropped = 0

    def write_through(self, sender: RTCRtpSender, codec: RTCRtpCodecParameters | None) -> None:
        """Hand packets straight to ``sender`` (whose track this is) sending ``codec``, where
        this aiortc allows it (``RtpWriter.for_sender``); otherwise its loop drains the queue."""
        self._writer = aiortc_internals.RtpWriter.for_sender(sender, codec)

    def send(self, payload: bytes, pts: int) -> None:
        """Send ``payload`` (pts on ``TIME_BASE``): written through at once where bound, else
        queued (as an ``av.Packet``) for the sender's loop."""
        if self._writer is not None:
            self._write(payload, pts)
            return
        packet = Packet(payload)
        packet.pts = pts
        packet.time_base = TIME_BASE
        if len(self._queue) == CAPACITY:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(packet)
        self._wake()

    def _write(self, payload: bytes, pts: int) -> None:
        writer, held = self._writer, self._held
        assert writer is not None
        if not writer.sends(self):  # replaced on its sender: whatever reads it reads the queue
            self._writer = None
            self.dropped += len(held) + 1
            held.clear()
            self._wake()
            return
        if not held and writer.write(payload, pts):
            return
        held.append((payload, pts))
        while held and writer.write(*held[0]):
            held.popleft()
        while len(held) > CAPACITY:
            held.popleft()
            self.dropped += 1

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> Packet:  # type: ignore[override]
        while not self._queue or self._writer is not None:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._wake()


class EncodedAudioTrack(PacketQueueTrack):
    """A sender's track of Opus packets taken straight from another leg's receiver.

    ``subscribers`` see every forwarded packet as its payload and pts (on ``TIME_BASE``): a
    recorder, a listen-in feed, the turn timer. They run on the forwarding path, after the
    interview's own copy went out.
    """

    def __init__(self, source: LegAudio) -> None:
        super().__init__()
        self._detach: Callable[[], None] = _nothing
        self._payload_type: int | None = None
        self._source_timestamp: int | None = None
        self._next_pts = 0
        self.subscribers: list[Callable[[bytes, int], None]] = []
        #: monotonic time of the last packet forwarded (None before the first)
        self.last_frame_at: float | None = None
        self.frames = 0
        self.replace_source(source)

    def replace_source(self, source: LegAudio) -> None:
        """Forward ``source``'s packets from now on (a reconnected peer's new receiver); the
        replaced receiver's last packets, until its peer connection closes, go nowhere (not
        to its decoder)."""
        self._detach()
        assert source.codec is not None
        self._payload_type = source.codec.payloadType
        self._source_timestamp = None
        self._detach = aiortc_internals.tap_receiver(source.receiver, self._on_packet)
        aiortc_internals.receive_directly(source.receiver)

    def _on_packet(self, packet: RtpPacket) -> None:
        if packet.payload_type != self._payload_type or not packet.payload:
            self.dropped += 1
            return
        now = time.monotonic()
        if self._source_timestamp is None:
            # A new source: go on from where the last one stopped, by the time that passed.
            if self.last_frame_at is not None:
                gap = round((now - self.last_frame_at) * OPUS_RATE)
                self._next_pts += max(gap, MIN_STEP)
            pts = self._next_pts
        else:
            step = (packet.timestamp - self._source_timestamp) % _WRAP
            if step == 0 or step >= _HALF:  # a duplicate, or later than one already sent
                self.dropped += 1
                return
            pts = self._next_pts + step
        self._source_timestamp = packet.timestamp
        self._next_pts = pts
        self.last_frame_at = now
        self.frames += 1
        payload = packet.payload
        self.send(payload, pts)  # the interview's own copy goes out first
        for subscriber in self.subscribers:
            subscriber(payload, pts)

    def stop(self) -> None:
        """Stop; the receiver's packets go nowhere from now on (a fallback route that must
        decode them gives it back its decoder)."""
        self._detach()
        self._detach = _nothing
        super().stop()


def _nothing() -> None:
    pass


class AudioRoute:
    """One direction of relayed audio, from one leg's peer to the other's: the track to send.

    A route is fast (``EncodedAudioTrack``) when both legs negotiated Opus, and otherwise
    decodes and re-encodes (``ForwardedTrack``), which is logged and counted in ``stats``.
    The caller hands ``track`` to ``target.sender`` (``addTrack`` on an answering leg).
    """

    def __init__(self, source: LegAudio, target: LegAudio, stats: MediaStats) -> None:
        self._target = target
        self._stats = stats
        self.track = self._track_for(source)

    @property
    def fast(self) -> bool:
        return isinstance(self.track, EncodedAudioTrack)

    @property
    def last_media_at(self) -> float | None:
        return self.track.last_frame_at

    def replace_source(self, source: LegAudio) -> None:
        """Take audio from ``source`` (a reconnected peer's new leg) from now on."""
        track = self.track
        if isinstance(track, EncodedAudioTrack) and self._can_forward(source):
            track.replace_source(source)
        elif isinstance(track, ForwardedTrack) and not self._can_forward(source):
            track.replace_source(self._decoded(source))
        else:
            self.track = self._track_for(source)
            self._target.sender.replaceTrack(self.track)
            track.stop()

    def _can_forward(self, source: LegAudio) -> bool:
        return forwardable(source.codec) and forwardable(self._target.codec)

    def _track_for(self, source: LegAudio) -> EncodedAudioTrack | ForwardedTrack:
        if self._can_forward(source):
            track = EncodedAudioTrack(source)
            track.write_through(self._target.sender, self._target.codec)
            return track
        blocker = source.codec if not forwardable(source.codec) else self._target.codec
        name = blocker.mimeType if blocker is not None else "unknown"
        self._stats.transcode_fallbacks[name] += 1
        log.warning(
            "relayed audio cannot be forwarded as is (%s, aiortc %s): decoding and re-encoding",
            name,
            aiortc.__version__,
        )
        return ForwardedTrack(self._decoded(source))

    @staticmethod
    def _decoded(source: LegAudio) -> MediaStreamTrack:
        """``source``'s track, decoding: an earlier, forwarding route may have tapped it."""
        aiortc_internals.restore_decoder(source.receiver)
        return source.track
