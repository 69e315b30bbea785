"""A camera's frames for the recording tests, encoded as browsers encode them: VP8 by libvpx,
H.264 by libx264 (Constrained Baseline, zero latency, parameter sets with every IDR), through
PyAV; and a frame's codec payload, to compare what was sent with what a container holds."""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

import av
import numpy as np

from gateway.recording.video_codecs import nal_units

Codec = Literal["vp8", "h264"]
CODECS: tuple[Codec, ...] = ("vp8", "h264")


def camera_frames(
    count: int, keyframes: frozenset[int] = frozenset(), codec: Codec = "vp8"
) -> list[tuple[bytes, bool]]:
    """``count`` frames at 30 fps of a noise picture drifting a pixel a frame, (bytes,
    keyframe): the first a keyframe, and those at ``keyframes`` (the encoder's own keyframe
    distance is beyond ``count``, and a drift is no scene cut). H.264 frames are Annex B
    access units, as aiortc's depacketizer hands them on."""
    encoder = av.CodecContext.create("libvpx" if codec == "vp8" else "libx264", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = 160, 120, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.gop_size = count + 1
    if codec == "vp8":
        encoder.options = {"auto-alt-ref": "0", "lag-in-frames": "0"}
    else:
        encoder.profile = "Baseline"
        encoder.options = {"tune": "zerolatency", "level": "31", "sc_threshold": "0"}
    noise = np.random.default_rng(7).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    frames = []
    for index in range(count):
        picture = np.roll(noise, index, axis=1)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        if index in keyframes:
            frame.pict_type = av.video.frame.PictureType.I
        frames += [(bytes(p), p.is_keyframe) for p in encoder.encode(frame)]
    return frames


def payload(data: bytes, codec: Codec, *, stored: bool) -> list[bytes]:
    """What of a frame its codec carries, framing aside: a VP8 frame whole, an H.264 access
    unit's NAL units: after Annex B start codes as sent, after 4-byte lengths as ``stored`` in
    a Matroska block (where a length can begin with a start code's bytes)."""
    if codec == "vp8":
        return [data]
    if not stored:
        return list(nal_units(data))
    units, at = [], 0
    while at + 4 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        units.append(data[at + 4 : at + 4 + length])
        at += 4 + length
    assert at == len(data), "not an access unit of length-prefixed NAL units"
    return units
