"""The candidate's video as the encoded frames it came in: for recording, never decoded.

Nobody forwards the candidate's video (the interviewer hears, it does not see), so without a
recording it is only drained. With one, and when the browser leg negotiated a codec the
recorder knows (VP8 or H.264: ``recording.video_codecs``), the receiver's jitter buffer is
tapped (``aiortc_internals.tap_frames``): aiortc reassembles each frame from its depacketized
RTP payloads and ``VideoFrames`` hands it to ``subscribers`` as an ``av.Packet`` whose pts
counts the sender's 90 kHz clock from its first frame, with ``is_keyframe`` as the codec reads
it (a VP8 frame tag, an H.264 IDR slice). A recorder that needs a keyframe (to begin a
segment) calls ``request_keyframe``, which sends the sender a PLI.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.packet import Packet

from gateway.media import aiortc_internals
from gateway.recording.video_codecs import VideoCodec, codec_where

VIDEO_RATE = 90000
TIME_BASE = fractions.Fraction(1, VIDEO_RATE)
_HALF = 1 << 31
_WRAP = 1 << 32


def recordable(codec: RTCRtpCodecParameters | None) -> VideoCodec | None:
    """The recorder's codec for video negotiated as ``codec``, if it can be recorded as it
    came (VP8 or H.264, on a known aiortc)."""
    if codec is None or not aiortc_internals.version_supported():
        return None
    return codec_where("mime_type", codec.mimeType)


class VideoFrames:
    """One receiver's frames of ``codec``, for ``subscribers`` (pts on a 1/90000 time base)."""

    def __init__(self, receiver: RTCRtpReceiver, codec: VideoCodec) -> None:
        self.receiver = receiver
        self.codec = codec
        self.subscribers: list[Callable[[Packet], None]] = []
        self._last: int | None = None
        self._pts = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._detach = aiortc_internals.tap_frames(receiver, self._on_frame)

    def _on_frame(self, frame: JitterFrame) -> None:
        if not frame.data:
            return
        last = frame.timestamp if self._last is None else self._last
        step = (frame.timestamp - last) % _WRAP
        if step >= _HALF:  # older than one already handed on: out of order
            return
        self._last = frame.timestamp
        self._pts += step
        packet = Packet(frame.data)
        packet.pts = packet.dts = self._pts
        packet.time_base = TIME_BASE
        packet.is_keyframe = self.codec.is_keyframe(frame.data)
        for subscriber in self.subscribers:
            subscriber(packet)

    def request_keyframe(self) -> None:
        """Ask the sender for a keyframe (a PLI); nothing waits for it."""
        task = asyncio.ensure_future(aiortc_internals.request_keyframe(self.receiver))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def stop(self) -> None:
        self._detach()
        for task in self._pending:
            task.cancel()
