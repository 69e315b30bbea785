"""What a restarted gateway's recovery makes of each state a killed one can leave its spool
in: real files and rows in Postgres, laid out as the recorder and the uploader leave them."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import av
import pytest

from gateway.recording import opus
from gateway.recording.matroska import VideoWriter
from gateway.recording.ogg import OggOpusWriter
from gateway.recording.recovery import recover
from gateway.recording.segments import Participant, segment_name
from gateway.recording.storage import LocalStorage
from gateway.recording.uploads import Uploader
from gateway.recording.video_codecs import codec_where
from storage import interviews, tenants
from storage.database import Database
from tests.recording.camera import CODECS, Codec, camera_frames, payload

BEGAN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PACKET = bytes([0xFC]) + bytes(range(60))  # CELT 20 ms, code 0: 960 samples


def segment(path: Path, packets: int, *, finished: bool = True) -> bytes:
    """An Ogg Opus segment of ``packets`` 20 ms packets (pages of one second), as written."""
    with path.open("wb") as sink:
        writer = OggOpusWriter(sink, serial=0)
        for _ in range(packets):
            writer.write(PACKET, opus.packet_samples(PACKET))
        if finished:
            writer.finish()
    return path.read_bytes()


async def test_recovery_settles_every_state_a_killed_gateway_leaves(
    db: Database, tmp_path: Path
) -> None:
    tenant = await tenants.create_tenant(db, "recovery")
    interview = await interviews.create_session(db, tenant, requested_mode="relay")
    spool = tmp_path / "spool"
    directory = spool / str(tenant) / str(interview)
    directory.mkdir(parents=True)
    storage = LocalStorage(tmp_path / "recordings")
    kept = storage.root / str(tenant) / str(interview)

    async def row(who: Participant, sequence: int, status: str, **fields: object) -> UUID:
        segment_id = await interviews.add_video_segment(
            db, tenant, interview, participant=who, kind="audio", sequence=sequence,
            codec="opus", started_at=BEGAN + timedelta(seconds=2 * sequence),
            storage_uri=(directory / segment_name(who, sequence)).as_uri(),
        )  # fmt: skip
        await interviews.update_video_segment(db, tenant, segment_id, status=status, **fields)
        return segment_id

    # candidate 0: stored, its file complete in the spool (storage was away)
    segment(directory / segment_name("candidate", 0), 100)
    await row("candidate", 0, "stored", duration_ms=2000)
    # candidate 1: stored, but storage already took the file when the process died
    kept.mkdir(parents=True)
    segment(kept / segment_name("candidate", 1), 100)
    await row("candidate", 1, "stored", duration_ms=2000)
    # candidate 2: being written; the last page torn
    torn = segment(directory / segment_name("candidate", 2), 160, finished=False)
    (directory / segment_name("candidate", 2)).write_bytes(torn[:-7])
    await row("candidate", 2, "recording")
    # interviewer 0: uploaded to S3-like storage, its spooled copy not yet removed
    segment(directory / segment_name("interviewer", 0), 100)
    uploaded = await row(
        "interviewer", 0, "uploaded", storage_uri="s3://elsewhere/i0", duration_ms=2000
    )
    # interviewer 1: a file whose row never made it (killed between the two)
    segment(directory / segment_name("interviewer", 1), 60, finished=False)
    # interviewer 2: opened, then killed before any audio page reached the disk
    headers_only = segment(directory / segment_name("interviewer", 2), 10, finished=False)
    (directory / segment_name("interviewer", 2)).write_bytes(headers_only)
    await row("interviewer", 2, "recording")
    (directory / "notes.txt").write_text("not a segment")  # left alone

    uploader = Uploader(db, storage, retry_seconds=0.1)
    found = await recover(spool, db, uploader)
    await uploader.close(within=10)

    assert (found.uploading, found.salvaged, found.lost, found.removed) == (3, 2, 1, 2)
    rows = {
        (r.participant, r.sequence): r
        for r in await interviews.list_video_segments(db, tenant, interview)
    }
    status = {key: r.status for key, r in rows.items()}
    assert status == {
        ("candidate", 0): "uploaded",
        ("candidate", 1): "uploaded",
        ("candidate", 2): "uploaded",
        ("interviewer", 0): "uploaded",
        ("interviewer", 1): "uploaded",
        ("interviewer", 2): "failed",
    }
    for key in [("candidate", 0), ("candidate", 1), ("candidate", 2), ("interviewer", 1)]:
        assert rows[key].storage_uri == (kept / segment_name(*key)).as_uri()
    assert rows["interviewer", 0].id == uploaded
    assert rows["interviewer", 0].storage_uri == "s3://elsewhere/i0"  # not put again
    # the torn segment keeps its two whole seconds; the row-less one its one whole second
    assert rows["candidate", 2].duration_ms == 2000
    assert (kept / segment_name("candidate", 2)).stat().st_size == rows["candidate", 2].bytes
    assert rows["interviewer", 1].duration_ms == 1000
    assert rows["interviewer", 1].started_at == BEGAN + timedelta(seconds=2)  # after i0's 2 s
    # nothing of a segment is left in the spool; what was not a segment is
    assert sorted(os.listdir(directory)) == ["notes.txt"]


def video_segment(path: Path, frames: list[tuple[bytes, bool]], codec: Codec) -> None:
    video_codec = codec_where("name", codec)
    assert video_codec is not None
    with path.open("w+b") as sink:
        writer = VideoWriter.beginning_with(sink, video_codec, frames[0][0])
        for index, (data, keyframe) in enumerate(frames):
            writer.write(data, index * 3000, keyframe)
        writer.finish()


@pytest.mark.parametrize("codec", CODECS)
async def test_recovery_salvages_a_torn_video_segment_and_uploads_a_stored_one(
    db: Database, tmp_path: Path, codec: Codec
) -> None:
    tenant = await tenants.create_tenant(db, "video recovery")
    interview = await interviews.create_session(db, tenant, requested_mode="relay")
    spool = tmp_path / "spool"
    directory = spool / str(tenant) / str(interview)
    directory.mkdir(parents=True)
    storage = LocalStorage(tmp_path / "recordings")
    kept = storage.root / str(tenant) / str(interview)
    frames = camera_frames(150, codec=codec)

    async def row(sequence: int, status: str, **fields: object) -> None:
        segment_id = await interviews.add_video_segment(
            db, tenant, interview, participant="candidate", kind="video", sequence=sequence,
            codec=codec, started_at=BEGAN + timedelta(seconds=5 * sequence),
            storage_uri=(directory / name(sequence)).as_uri(),
        )  # fmt: skip
        await interviews.update_video_segment(db, tenant, segment_id, status=status, **fields)

    def name(sequence: int) -> str:
        return segment_name("candidate", sequence, "video", codec)

    # 0: stored (storage was away); 1: torn by the kill, its tail gone; 2: nothing whole
    video_segment(directory / name(0), frames, codec)
    await row(0, "stored", duration_ms=5000)
    torn = directory / name(1)
    video_segment(torn, frames, codec)
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size * 6 // 10])
    await row(1, "recording")
    empty = directory / name(2)
    video_segment(empty, frames, codec)
    empty.write_bytes(empty.read_bytes()[:120])
    await row(2, "recording")

    uploader = Uploader(db, storage, retry_seconds=0.1)
    found = await recover(spool, db, uploader)
    await uploader.close(within=10)

    assert (found.uploading, found.salvaged, found.lost) == (2, 1, 1)
    rows = {r.sequence: r for r in await interviews.list_video_segments(db, tenant, interview)}
    assert {s: r.status for s, r in rows.items()} == {0: "uploaded", 1: "uploaded", 2: "failed"}
    salvaged = kept / name(1)
    with av.open(str(salvaged)) as container:
        assert container.streams.video[0].codec_context.name == codec
        survived = [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]
    # a whole prefix of the frames, the very bytes, and the row says how much of it
    assert 0 < len(survived) < len(frames)
    assert [payload(data, codec, stored=True) for data in survived] == [
        payload(data, codec, stored=False) for data, _ in frames[: len(survived)]
    ]
    assert rows[1].duration_ms == round((len(survived) - 1) * 1000 / 30)
    assert rows[1].bytes == salvaged.stat().st_size
    assert os.listdir(directory) == []
