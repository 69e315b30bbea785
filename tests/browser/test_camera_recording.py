"""A real Chromium's camera recorded as it came: the browser client sends the camera (Chromium's
fake device) beside the microphone, the gateway records the frames its receiver reassembled,
and each segment holds the codec the browser sent, read back by FFmpeg (PyAV). VP8 is what
Chromium offers first; a browser that prefers H.264 (Safari does) is this Chromium with the
video transceiver's codec preferences set to H.264 before it offers, and its camera lands in
Matroska segments, codec ``h264``, whose track FFmpeg opens at the camera's picture size."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import pytest
from playwright.async_api import Page

from gateway.app import DATABASE, SESSIONS
from storage.interviews import VideoSegmentRecord
from tests.gateway.test_recording import segments_until

from .conftest import Gateway, LaunchBrowser, browser_test

pytestmark = browser_test

#: Sets a video transceiver's codec preferences to H.264 just before each offer: what a
#: browser that prefers H.264 sends, from a Chromium that would send VP8.
PREFER_H264 = """
    const createOffer = RTCPeerConnection.prototype.createOffer;
    RTCPeerConnection.prototype.createOffer = function (...args) {
        const h264 = RTCRtpSender.getCapabilities("video").codecs.filter(
            (c) => c.mimeType.toLowerCase() === "video/h264");
        for (const transceiver of this.getTransceivers()) {
            if (transceiver.sender.track?.kind === "video") {
                transceiver.setCodecPreferences(h264);
            }
        }
        return createOffer.apply(this, args);
    };
"""

#: What Chromium's fake camera captures by default.
CAMERA = (640, 480)


@pytest.fixture
def gateway_options() -> dict[str, object]:
    return {"recording": "audio", "recording_segment_seconds": 1.0}


async def sent_codec(page: Page) -> str:
    """The codec of the browser's outbound video, as its own stats name it."""
    codec: str = await page.evaluate(
        """async () => {
            const stats = [...(await interviewClient.peerConnection.getStats()).values()];
            const video = stats.find((s) => s.type === "outbound-rtp" && s.kind === "video");
            return stats.find((s) => s.id === video?.codecId)?.mimeType ?? "none";
        }"""
    )
    return codec.lower()


def uploaded_video(rows: list[VideoSegmentRecord]) -> list[VideoSegmentRecord]:
    return [r for r in rows if r.kind == "video" and r.status == "uploaded"]


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_chromiums_camera_is_recorded_in_the_codec_it_sent(
    gateway: Gateway, launch_browser: LaunchBrowser, codec: str
) -> None:
    browser = await launch_browser()
    page = await browser.new_page()
    if codec == "h264":
        capabilities = await page.evaluate(
            "RTCRtpSender.getCapabilities('video').codecs.map((c) => c.mimeType.toLowerCase())"
        )
        if "video/h264" not in capabilities:
            pytest.skip("this Chromium cannot send H.264 (built without an H.264 encoder)")
        await page.add_init_script(PREFER_H264)
    invitation = await gateway.invite("relay")
    await page.goto(f"{gateway.base_url}/interview/{invitation.interview_id}")
    await page.evaluate(
        """async ([signalUrl, token]) => {
            const { InterviewClient } = await import("/static/interview-client.js");
            window.interviewClient = new InterviewClient({ signalUrl, token, video: true });
            await interviewClient.start();
        }""",
        [invitation.signal_url(gateway.base_url), invitation.token],
    )
    ids = (invitation.tenant_id, invitation.interview_id)
    rows = await segments_until(
        gateway.app[DATABASE], *ids, lambda rows: len(uploaded_video(rows)) >= 2, within=30
    )
    video = uploaded_video(rows)
    assert await sent_codec(page) == f"video/{codec}"
    session = gateway.app[SESSIONS].live(*ids)
    assert session is not None
    await page.evaluate("interviewClient.end()")
    await asyncio.wait_for(session.ended.wait(), 15)

    assert {(r.participant, r.codec) for r in video} == {("candidate", codec)}
    for row in video:
        path = Path((row.storage_uri or "").removeprefix("file://"))
        assert path.suffix == (".webm" if codec == "vp8" else ".mkv")
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == codec
            assert (stream.codec_context.width, stream.codec_context.height) == CAMERA
            packets = [p for p in container.demux(stream) if p.size]
        assert packets and packets[0].is_keyframe, f"segment {row.sequence} has no keyframe first"
