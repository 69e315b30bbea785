"""What the recorder reads of an H.264 stream without decoding it: the picture size from the
SPS, for every profile and chroma format a browser's encoder may use (frame cropping and
scaling matrices included), checked against libx264's own streams; and a clear refusal of a
parameter set it cannot read."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from gateway.recording.video_codecs import H264, NotAKeyframe, h264_size, nal_units

SPS = 7


def first_access_unit(profile: str, width: int, height: int, pix_fmt: str, **options: str) -> bytes:
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = width, height, pix_fmt
    encoder.time_base = Fraction(1, 30)
    encoder.profile = profile
    encoder.options = options
    picture = np.zeros((height, width, 3), np.uint8)
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format=pix_fmt)
    frame.pts = 0
    return b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])


@pytest.mark.parametrize(
    ("profile", "width", "height", "pix_fmt", "options"),
    [
        ("Baseline", 160, 120, "yuv420p", {}),
        ("High", 1278, 718, "yuv420p", {"x264-params": "cqm=jvt"}),  # cropped, scaling lists
        ("High 4:2:2", 350, 202, "yuv422p", {}),
        ("High 4:4:4 Predictive", 642, 362, "yuv444p", {}),
    ],
)
def test_the_sps_says_the_picture_size(
    profile: str, width: int, height: int, pix_fmt: str, options: dict[str, str]
) -> None:
    unit = first_access_unit(profile, width, height, pix_fmt, **options)
    [sps] = [u for u in nal_units(unit) if u[0] & 0x1F == SPS]
    assert h264_size(sps) == (width, height)
    template = H264().template(unit)
    assert (template.width, template.height) == (width, height)


def test_a_parameter_set_that_cannot_be_read_is_refused() -> None:
    unit = first_access_unit("Baseline", 160, 120, "yuv420p")
    [sps] = [u for u in nal_units(unit) if u[0] & 0x1F == SPS]
    with pytest.raises(NotAKeyframe, match="cut short"):
        h264_size(sps[:4])
    with pytest.raises(NotAKeyframe):
        h264_size(bytes([0x67, 66, 0, 30]) + b"\x00" * 8)  # an Exp-Golomb code of 64 zeros
    idr_alone = b"".join(b"\x00\x00\x00\x01" + u for u in nal_units(unit) if u[0] & 0x1F == 5)
    with pytest.raises(NotAKeyframe, match="none came before"):
        H264().template(idr_alone)
