"""The candidate's video track of a recording, fed frame by frame, VP8 and H.264 alike:
segments begin with a keyframe, a full segment asks for one (a PLI, again each second it has
not come), frames before the first keyframe and a keyframe a segment cannot begin with are
dropped, each segment holds the very frames it was given, and a new source of another codec
(the candidate reconnected from another browser) begins a segment of its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from av.packet import Packet

from gateway.recording.export import frames
from gateway.recording.recorder import RecordingOptions, Recordings
from gateway.recording.storage import LocalStorage
from gateway.recording.video_codecs import H264, VideoCodec, Vp8
from storage import interviews, tenants
from storage.database import Database
from tests.recording.camera import CODECS, Codec, camera_frames, payload

TICKS = 3000  # a frame at 30 fps, on the 90 kHz clock


class FrameSource:
    """Frames in as ``media.video.VideoFrames`` hands them on, and the keyframes asked for."""

    def __init__(self, codec: VideoCodec) -> None:
        self.subscribers: list[Callable[[Packet], None]] = []
        self.codec = codec
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    def send(self, data: bytes, index: int, keyframe: bool) -> None:
        packet = Packet(data)
        packet.pts = index * TICKS
        packet.is_keyframe = keyframe
        for subscriber in self.subscribers:
            subscriber(packet)


#: a keyframe bit on a frame a segment cannot begin with: no VP8 key frame header; an H.264
#: IDR slice before any SPS and PPS came
UNUSABLE_KEYFRAMES: dict[Codec, bytes] = {
    "vp8": b"\x00" * 12,
    "h264": b"\x00\x00\x00\x01\x65" + b"\x88" * 8,
}


def new_recording(db: Database, tmp_path: Path) -> Recordings:
    return Recordings(
        RecordingOptions(
            db=db,
            storage=LocalStorage(tmp_path / "recordings"),
            spool_dir=tmp_path / "spool",
            segment_seconds=1.0,
        )
    )


def stored_frames(row: interviews.VideoSegmentRecord) -> list[tuple[int, bytes, bool, int]]:
    assert row.storage_uri is not None
    return list(frames(Path(row.storage_uri.removeprefix("file://")).read_bytes()))


@pytest.mark.parametrize("codec", CODECS)
async def test_video_segments_begin_with_keyframes_asked_for_at_each_boundary(
    db: Database, tmp_path: Path, codec: Codec
) -> None:
    tenant = await tenants.create_tenant(db, "video")
    interview = await interviews.create_session(db, tenant, requested_mode="relay")
    recordings = new_recording(db, tmp_path)
    recording = recordings.start(tenant, interview)
    source = FrameSource(Vp8() if codec == "vp8" else H264())
    recording.follow_video("candidate", source)
    assert source.keyframe_requests == 1  # a new source is asked for a keyframe at once

    sent = camera_frames(100, keyframes=frozenset({75}), codec=codec)
    assert [i for i, (_, key) in enumerate(sent) if key] == [0, 75]
    assert [i for i, (data, _) in enumerate(sent) if source.codec.is_keyframe(data)] == [0, 75]
    source.send(sent[1][0], 0, False)  # before any keyframe: dropped, and one asked for again
    assert source.keyframe_requests == 2
    source.send(UNUSABLE_KEYFRAMES[codec], 0, True)
    track = recording.video["candidate"]
    assert track.malformed == 1 and track.bytes_written == 0
    for index, (data, keyframe) in enumerate(sent):
        source.send(data, index + 1, keyframe)
    # full at 1 s (frame 30): asked then, and again at 2 s, until frame 75's keyframe
    assert source.keyframe_requests == 4
    recording.close()
    await recordings.close()

    rows = await interviews.list_video_segments(db, tenant, interview)
    assert [(r.kind, r.codec, r.sequence, r.status) for r in rows] == [
        ("video", codec, 0, "uploaded"),
        ("video", codec, 1, "uploaded"),
    ]
    assert {Path(r.storage_uri or "").suffix for r in rows} == {
        ".webm" if codec == "vp8" else ".mkv"
    }
    held = [stored_frames(r) for r in rows]
    assert [[key for _, _, key, _ in segment][:1] for segment in held] == [[True], [True]]
    assert [payload(data, codec, stored=True) for segment in held for _, data, _, _ in segment] == [
        payload(d, codec, stored=False) for d, _ in sent
    ]
    assert [len(segment) for segment in held] == [75, 25]  # cut at the keyframe
    assert rows[1].started_at is not None and rows[0].started_at is not None
    assert round((rows[1].started_at - rows[0].started_at).total_seconds(), 3) == 2.5


async def test_a_source_of_another_codec_begins_a_segment_of_its_own(
    db: Database, tmp_path: Path
) -> None:
    tenant = await tenants.create_tenant(db, "video codecs")
    interview = await interviews.create_session(db, tenant, requested_mode="relay")
    recordings = new_recording(db, tmp_path)
    recording = recordings.start(tenant, interview)
    first, second = FrameSource(Vp8()), FrameSource(H264())
    recording.follow_video("candidate", first)
    vp8, h264 = camera_frames(10, codec="vp8"), camera_frames(10, codec="h264")
    for index, (data, keyframe) in enumerate(vp8):
        first.send(data, index, keyframe)
    recording.follow_video("candidate", second)  # the candidate came back in another browser
    assert second.keyframe_requests == 1
    # its keyframe lost on the way: what follows cannot follow VP8, and a keyframe is asked
    # for again each second until one comes
    for index in range(70):
        second.send(h264[1][0], index - 70, False)
    assert second.keyframe_requests == 1 + 3  # at -70 (-2.33 s), -40 and -10 frames
    for index, (data, keyframe) in enumerate(h264):
        second.send(data, index, keyframe)
    recording.close()
    await recordings.close()

    rows = await interviews.list_video_segments(db, tenant, interview)
    assert [(r.sequence, r.codec, r.status) for r in rows] == [
        (0, "vp8", "uploaded"),
        (1, "h264", "uploaded"),
    ]
    held = [stored_frames(r) for r in rows]
    assert [len(segment) for segment in held] == [10, 10]
    assert [payload(d, "h264", stored=True) for _, d, _, _ in held[1]] == [
        payload(d, "h264", stored=False) for d, _ in h264
    ]
