"""One WebM file of VP8 frames as they came: FFmpeg's muxer through PyAV, no codec opened.

PyAV muxes pre-encoded packets into a stream made from a template; the template here is a
one-frame IVF file built in memory around the segment's first (key) frame, whose header
FFmpeg's IVF demuxer reads the codec and picture size from, so neither an encoder nor a
decoder is ever opened. Each frame is written with its pts (90 kHz, from the segment's start;
the muxer keeps milliseconds) and its keyframe flag; nothing else about it changes.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from typing import BinaryIO

import av
from av.packet import Packet

TIME_BASE = Fraction(1, 90000)


class NotAKeyframe(ValueError):
    """A VP8 segment must begin with a key frame (its picture size is read from it)."""


def vp8_size(keyframe: bytes) -> tuple[int, int]:
    """(width, height) from a VP8 key frame's header (RFC 6386 section 9.1)."""
    if len(keyframe) < 10 or keyframe[0] & 1 or keyframe[3:6] != b"\x9d\x01\x2a":
        raise NotAKeyframe("not a VP8 key frame")
    width, height = struct.unpack_from("<HH", keyframe, 6)
    return width & 0x3FFF, height & 0x3FFF


def _ivf(keyframe: bytes) -> bytes:
    width, height = vp8_size(keyframe)
    header = struct.pack("<4sHH4sHHIIII", b"DKIF", 0, 32, b"VP80", width, height, 90000, 1, 1, 0)
    return header + struct.pack("<IQ", len(keyframe), 0) + keyframe


class WebmVp8Writer:
    """One VP8 track written to ``sink`` (seekable: the muxer writes sizes and cues at the end)."""

    def __init__(self, sink: BinaryIO, keyframe: bytes) -> None:
        with av.open(io.BytesIO(_ivf(keyframe)), "r", format="ivf") as template:
            self._container = av.open(sink, "w", format="webm", options={"fflags": "+bitexact"})
            self._stream = self._container.add_stream_from_template(template.streams.video[0])
        self._stream.time_base = TIME_BASE
        self.frames = 0
        #: pts of the last frame written (90 kHz from the segment's start)
        self.last_pts = 0

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        packet = Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        packet.is_keyframe = keyframe
        packet.stream = self._stream
        self._container.mux(packet)
        self.frames += 1
        self.last_pts = pts

    def finish(self) -> None:
        """Write the trailer (sizes, cues); the sink stays open, for its fsync."""
        self._container.close()
