"""VP8 frames for the recording tests, encoded by libvpx (through PyAV) as a browser's are."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def vp8_frames(count: int, keyframes: frozenset[int] = frozenset()) -> list[tuple[bytes, bool]]:
    """``count`` frames at 30 fps of a noise picture drifting a pixel a frame, (bytes,
    keyframe): the first a keyframe, and those at ``keyframes`` (libvpx's own keyframe
    distance is beyond ``count``, and a drift is no scene cut)."""
    codec = av.CodecContext.create("libvpx", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = 160, 120, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.gop_size = count + 1
    codec.options = {"auto-alt-ref": "0", "lag-in-frames": "0"}
    noise = np.random.default_rng(7).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    frames = []
    for index in range(count):
        picture = np.roll(noise, index, axis=1)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        if index in keyframes:
            frame.pict_type = av.video.frame.PictureType.I
        frames += [(bytes(p), p.is_keyframe) for p in codec.encode(frame)]
    return frames
