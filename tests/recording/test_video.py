"""The candidate's video track of a recording, fed frame by frame: segments begin with a
keyframe, a full segment asks for one (a PLI, again each second it has not come), frames
before the first keyframe and a keyframe that is not VP8's are dropped, and each segment
holds the very frames it was given."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from av.packet import Packet

from gateway.recording.export import frames
from gateway.recording.recorder import RecordingOptions, Recordings
from gateway.recording.storage import LocalStorage
from storage import interviews, tenants
from storage.database import Database
from tests.recording.vp8 import vp8_frames

TICKS = 3000  # a frame at 30 fps, on the 90 kHz clock


class FrameSource:
    """Frames in as ``media.video.VideoFrames`` hands them on, and the keyframes asked for."""

    def __init__(self) -> None:
        self.subscribers: list[Callable[[Packet], None]] = []
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    def send(self, data: bytes, index: int, keyframe: bool) -> None:
        packet = Packet(data)
        packet.pts = index * TICKS
        packet.is_keyframe = keyframe
        for subscriber in self.subscribers:
            subscriber(packet)


async def test_video_segments_begin_with_keyframes_asked_for_at_each_boundary(
    db: Database, tmp_path: Path
) -> None:
    tenant = await tenants.create_tenant(db, "video")
    interview = await interviews.create_session(db, tenant, requested_mode="relay")
    recordings = Recordings(
        RecordingOptions(
            db=db,
            storage=LocalStorage(tmp_path / "recordings"),
            spool_dir=tmp_path / "spool",
            segment_seconds=1.0,
        )
    )
    recording = recordings.start(tenant, interview)
    source = FrameSource()
    recording.follow_video("candidate", source)
    assert source.keyframe_requests == 1  # a new source is asked for a keyframe at once

    sent = vp8_frames(100, keyframes=frozenset({75}))
    assert [i for i, (_, key) in enumerate(sent) if key] == [0, 75]
    source.send(sent[1][0], 0, False)  # before any keyframe: dropped
    source.send(b"\x00" * 12, 0, True)  # a keyframe bit, but no VP8 key frame header
    track = recording.video["candidate"]
    assert track.malformed == 1 and track.bytes_written == 0
    for index, (data, keyframe) in enumerate(sent):
        source.send(data, index + 1, keyframe)
    # full at 1 s (frame 30): asked then, and again at 2 s, until frame 75's keyframe
    assert source.keyframe_requests == 3
    recording.close()
    await recordings.close()

    rows = await interviews.list_video_segments(db, tenant, interview)
    assert [(r.kind, r.codec, r.sequence, r.status) for r in rows] == [
        ("video", "vp8", 0, "uploaded"),
        ("video", "vp8", 1, "uploaded"),
    ]
    held = [
        list(frames(Path(r.storage_uri.removeprefix("file://")).read_bytes()))
        for r in rows
        if r.storage_uri
    ]
    assert [[key for _, _, key, _ in segment][:1] for segment in held] == [[True], [True]]
    assert [data for segment in held for _, data, _, _ in segment] == [d for d, _ in sent]
    assert [len(segment) for segment in held] == [75, 25]  # cut at the keyframe
    assert rows[1].started_at is not None and rows[0].started_at is not None
    assert round((rows[1].started_at - rows[0].started_at).total_seconds(), 3) == 2.5
