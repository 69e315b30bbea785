"""Relayed interviews recorded as they cross the gateway: both voices, segment by segment,
read back with FFmpeg (PyAV); and a gateway killed mid-interview keeps what it completed."""

from __future__ import annotations

import asyncio
import itertools
import signal
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import av
import pytest

from gateway.recording import opus
from storage import interviews
from storage.database import Database
from storage.interviews import VideoSegmentRecord

from .conftest import GatewayFactory
from .served import served

pytestmark = pytest.mark.slow

SEGMENT_SECONDS = 1.0
PEER_TIMEOUT = 1.0


async def segments_until(
    db: Database, tenant: UUID, interview: UUID, done: object, within: float
) -> list[VideoSegmentRecord]:
    """The interview's segment rows once ``done(rows)`` holds (the database is the witness)."""
    assert callable(done)
    async with asyncio.timeout(within):
        while not done(rows := await interviews.list_video_segments(db, tenant, interview)):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return rows


def by_track(rows: list[VideoSegmentRecord]) -> dict[str, list[VideoSegmentRecord]]:
    tracks: dict[str, list[VideoSegmentRecord]] = {}
    for record in rows:
        tracks.setdefault(record.participant, []).append(record)
    return tracks


def local_path(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(uri.removeprefix("file://"))


def read_segment(path: Path) -> tuple[int, list[tuple[int, int]]]:
    """Decoded samples, and (pts, size) of each packet, of one segment file."""
    with av.open(str(path)) as container:
        packets = [(p.pts, p.size) for p in container.demux(audio=0) if p.size]
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
        samples = sum(frame.samples for frame in container.decode(audio=0))
    return samples, packets


def concealed_runs(packets: list[tuple[int, int]], least: int) -> list[tuple[int, int]]:
    """(start, length) in samples of each run of concealment packets lasting ``least`` or more."""
    runs, start, end = [], None, 0
    for pts, size in [*packets, (None, 999)]:
        if size <= 2 and pts is not None:
            start = pts if start is None else start
            end = pts
        elif start is not None:
            if end - start >= least:
                runs.append((start, end - start))
            start = None
    return runs


async def test_a_relayed_interview_records_both_voices_with_a_gap_in_its_place(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await start_gateway(
        mode="relay",
        recording="audio",
        recording_segment_seconds=SEGMENT_SECONDS,
        peer_timeout=PEER_TIMEOUT,
        reconnect_grace=10.0,
    )
    invitation = await gateway.invite("relay")
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    assert session is not None and candidate.pc is not None
    sender = next(s for s in candidate.pc.getSenders() if s.track and s.track.kind == "audio")
    # once the candidate's voice is on record (its first segment stored), it stops a while
    ids = (invitation.tenant_id, invitation.interview_id)
    await segments_until(
        gateway.db,
        *ids,
        lambda rows: any(r.participant == "candidate" and r.status == "uploaded" for r in rows),
        within=10,
    )
    sender.replaceTrack(None)  # the candidate's audio stops (a network blip)...
    gap_from = datetime.now(UTC)
    async with asyncio.timeout(PEER_TIMEOUT + 5):
        await session.losses_reach(lambda: "media" in session.losses)
    await candidate.connect(reconnect=True)  # ...and comes back on a new peer connection
    gap_to = datetime.now(UTC)
    heard = len(await interviews.list_video_segments(gateway.db, *ids))
    await segments_until(gateway.db, *ids, lambda rows: len(rows) >= heard + 4, within=10)
    assert candidate.client is not None
    await candidate.client.bye()
    ended = datetime.now(UTC)
    await candidate.close()
    await gateway.ended_record(invitation)

    rows = await segments_until(
        gateway.db,
        *ids,
        lambda rows: (
            len(by_track(rows)) == 2 and all(r.status in ("uploaded", "failed") for r in rows)
        ),
        within=15,
    )
    tracks = by_track(rows)
    assert set(tracks) == {"candidate", "interviewer"}
    # both tracks start when the relay does; times below are seconds from then
    began = tracks["candidate"][0].started_at
    assert tracks["interviewer"][0].started_at == began
    since = {
        name: (t - began).total_seconds()
        for name, t in (("gap_from", gap_from), ("gap_to", gap_to), ("ended", ended))
    }
    for participant, segments in tracks.items():
        assert [s.sequence for s in segments] == list(range(len(segments)))
        assert {(s.kind, s.codec, s.status) for s in segments} == {("audio", "opus", "uploaded")}
        timeline: list[tuple[int, int]] = []
        position = 0
        for segment in segments:
            path = local_path(segment.storage_uri)
            assert path.is_relative_to(tmp_path / "recordings")
            assert path.stat().st_size == segment.bytes
            samples, packets = read_segment(path)
            assert abs(samples * 1000 / opus.RATE - segment.duration_ms) <= 1
            assert samples <= SEGMENT_SECONDS * opus.RATE + 2880  # cut at the length asked for
            timeline += [(position + pts, size) for pts, size in packets]
            position += samples
        # both voices run from the recording's start to the end of the interview
        assert abs(position / opus.RATE - since["ended"]) < 0.5, (participant, position, since)
        if participant == "candidate":
            # the one long silence is the stretch without the candidate's audio, in its place
            # (a run from 0 is the time before the candidate's first packet, not a gap)
            runs = [run for run in concealed_runs(timeline, least=opus.RATE // 2) if run[0]]
            assert len(runs) == 1, (runs, since)
            [(start, length)] = runs
            assert abs(start / opus.RATE - since["gap_from"]) < 0.3
            assert abs((start + length) / opus.RATE - since["gap_to"]) < 0.3
        # each segment starts where the one before it ended
        for before, after in itertools.pairwise(segments):
            assert before.started_at is not None and after.started_at is not None
            step = (after.started_at - before.started_at).total_seconds() * 1000
            assert abs(step - before.duration_ms) <= 1


async def test_a_gateway_killed_mid_interview_uploads_its_segments_once_restarted(
    start_gateway: GatewayFactory, fresh_database_url: str, tmp_path: Path
) -> None:
    witness = await start_gateway(mode="relay")  # the database's reader after the kill
    data_dir = tmp_path / "doomed"
    # its storage refuses every segment (a file stands where its directory should be), so
    # completed segments stay `stored` in the spool, as they would with S3 away
    refusing = tmp_path / "refusing"
    refusing.write_text("")
    recordings = tmp_path / "recordings"
    env = {
        "GATEWAY_RECORDING": "audio",
        "GATEWAY_RECORDING_SEGMENT_SECONDS": str(SEGMENT_SECONDS),
        "GATEWAY_RECORDING_RETRY_SECONDS": "0.2",
    }
    async with served(
        fresh_database_url,
        data_dir,
        witness.db,
        witness.tenant_id,
        GATEWAY_RECORDING_DIR=str(refusing),
        **env,
    ) as doomed:
        invitation, candidate = await doomed.candidate()
        ids = (invitation.tenant_id, invitation.interview_id)

        def three_stored_each(rows: list[VideoSegmentRecord]) -> bool:
            tracks = by_track(rows)
            return len(tracks) == 2 and all(
                sum(r.status == "stored" for r in t) >= 3 for t in tracks.values()
            )

        await segments_until(witness.db, *ids, three_stored_each, within=30)
        doomed.process.send_signal(signal.SIGKILL)
        await doomed.process.wait()
        await candidate.close()
    before = by_track(await interviews.list_video_segments(witness.db, *ids))
    assert all(r.status != "uploaded" for t in before.values() for r in t)

    async with served(
        fresh_database_url, data_dir, witness.db, witness.tenant_id,
        GATEWAY_RECORDING_DIR=str(recordings), **env,
    ):  # fmt: skip
        rows = await segments_until(
            witness.db,
            *ids,
            lambda rows: all(r.status in ("uploaded", "failed") for r in rows),
            within=30,
        )
    tracks = by_track(rows)
    assert set(tracks) == set(before) == {"candidate", "interviewer"}
    assert all(len(tracks[name]) >= len(before[name]) for name in tracks)  # no row lost
    uploaded = set()
    for segments in tracks.values():
        assert [s.sequence for s in segments] == list(range(len(segments)))
        assert sum(s.status != "uploaded" for s in segments) <= 1  # at most one lost per track
        for segment in segments:
            if segment.status == "uploaded":
                path = local_path(segment.storage_uri)
                uploaded.add(path)
                assert path.stat().st_size == segment.bytes
                samples, _ = read_segment(path)
                assert abs(samples * 1000 / opus.RATE - segment.duration_ms) <= 1
        for before_segment, after in itertools.pairwise(segments):
            assert before_segment.started_at is not None and after.started_at is not None
            step = (after.started_at - before_segment.started_at).total_seconds() * 1000
            assert abs(step - before_segment.duration_ms) <= 1
    # in storage exactly once each, and nothing left behind in the spool
    assert set(recordings.rglob("*.opus")) == uploaded
    assert not list((data_dir / "recording-spool").rglob("*.opus"))
