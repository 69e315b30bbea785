"""GPT-Live's own recording (``GET /live/sessions/{id}/content``) fetched after a recorded
interview, in relay and proxy mode, through the in-process ``sim-live`` upstream (a stand-in
for OpenAI following the SDK's contract): stored once as the track ``upstream-content``,
listed and downloadable, after the upstream's 503s too; the key in no row and no log line."""

from __future__ import annotations

import asyncio
import io
import logging
import wave

import aiohttp
import pytest

from gateway.app import SESSIONS, SIMULATED_UPSTREAM
from gateway.recording.content import TRACK
from gateway.sim.live import CONTENT_RATE, SimulatedLiveSession
from gateway.sim.upstream import SimulatedUpstream
from storage import interviews, tenants

from .conftest import GatewayFactory
from .test_recording import segments_until
from .test_recording_s3 import BUCKET, S3Server, s3  # noqa: F401 (s3: the fixture)

pytestmark = pytest.mark.slow

#: generous: a whole interview's end, then the download and the upload, on a busy machine
WITHIN = 30.0


def upstream_rows(rows: list[interviews.VideoSegmentRecord]) -> list[interviews.VideoSegmentRecord]:
    return [r for r in rows if r.participant == "upstream"]


@pytest.mark.parametrize(("mode", "failures"), [("relay", 0), ("proxy", 3)])
async def test_the_upstreams_recording_is_fetched_once_listed_and_downloadable(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture, mode: str, failures: int
) -> None:
    caplog.set_level(logging.INFO)  # the gateway's own level (websockets logs headers at DEBUG)
    gateway = await start_gateway(
        mode=mode, upstream="sim-live", recording="audio", recording_retry_seconds=0.05
    )
    sim = gateway.app[SIMULATED_UPSTREAM]
    assert isinstance(sim, SimulatedUpstream)
    sim.content_failures = failures  # the upstream answers 503 this many times first
    invitation = await gateway.invite(mode)
    ids = (invitation.tenant_id, invitation.interview_id)
    report = await gateway.candidate(invitation).run(time_limit=90)
    assert report.error is None, report.error
    record = await gateway.ended_record(invitation)
    assert record.actual_mode == mode
    (session,) = sim.calls.values()
    assert isinstance(session, SimulatedLiveSession)
    assert session.stored  # the gateway asked GPT-Live to keep the session (store: true)
    rows = await segments_until(
        gateway.db,
        *ids,
        lambda rows: any(r.status == "uploaded" for r in upstream_rows(rows)),
        within=WITHIN,
    )
    (content,) = upstream_rows(rows)
    assert (content.kind, content.sequence, content.codec) == ("content", 0, "application/binary")
    assert sim.content_failures == 0 and sim.content_served == [session.id]
    expected = session.content()
    assert content.bytes == len(expected)
    if mode == "relay":  # the relay's own tracks beside it; proxy mode holds no media
        assert {r.participant for r in rows} == {"candidate", "interviewer", "upstream"}
    else:
        assert {r.participant for r in rows} == {"upstream"}

    # the interview's end again (a second gateway path, a retry): nothing fetched twice
    again = gateway.app[SESSIONS].calls.ended(*ids, [session.id], "audio")
    assert again is not None
    await again
    rows = await interviews.list_video_segments(gateway.db, *ids)
    assert len(upstream_rows(rows)) == 1 and sim.content_served == [session.id]

    key = await tenants.create_api_key(gateway.db, gateway.tenant_id, "tests")
    auth = {"Authorization": f"Bearer {key}"}
    base = f"{gateway.base_url}/v1/interviews/{invitation.interview_id}/recordings"
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get(base) as r:
            assert r.status == 200
            listed = await r.json()
        (track,) = [t for t in listed["tracks"] if t["track"] == TRACK]
        assert (track["participant"], track["kind"], track["codec"]) == (
            "upstream",
            "content",
            "application/binary",
        )
        assert (track["uploaded"], track["bytes"]) == (1, len(expected))
        async with http.get(gateway.base_url + track["download_url"]) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/binary"
            downloaded = await r.read()
        async with http.get(f"{base}/{TRACK}?sequence=1") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "no_recording"
    assert downloaded == expected
    with wave.open(io.BytesIO(downloaded)) as wav:  # a real file: the interviewer's speech
        assert (wav.getnchannels(), wav.getframerate()) == (1, CONTENT_RATE)
        assert wav.getnframes() / CONTENT_RATE > 1.0

    secret = sim._api_key
    assert secret and secret not in caplog.text
    async with gateway.db.tenant(invitation.tenant_id) as conn:
        for table in ("video_segments", "interview_sessions"):
            cur = await conn.execute(f"SELECT row_to_json(t)::text FROM {table} t")
            assert all(secret not in row[0] for row in await cur.fetchall())


async def test_an_interview_not_recorded_fetches_nothing(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(mode="proxy", upstream="sim-live", recording="requested")
    sim = gateway.app[SIMULATED_UPSTREAM]
    assert isinstance(sim, SimulatedUpstream)
    invitation = await gateway.invite("proxy")
    report = await gateway.candidate(invitation).run(time_limit=90)
    assert report.error is None, report.error
    await gateway.ended_record(invitation)
    (call,) = sim.calls.values()
    assert isinstance(call, SimulatedLiveSession) and not call.stored
    assert sim.content_served == []
    ids = (invitation.tenant_id, invitation.interview_id)
    assert await interviews.list_video_segments(gateway.db, *ids) == []


async def test_a_gateway_closing_does_not_wait_for_a_download_the_upstream_keeps_refusing(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The upstream answers 503 to every download and the gateway waits long between tries:
    closing the gateway drops the download (logged) instead of waiting for it."""
    gateway = await start_gateway(
        mode="proxy", upstream="sim-live", recording="audio", recording_retry_seconds=600
    )
    sim = gateway.app[SIMULATED_UPSTREAM]
    assert isinstance(sim, SimulatedUpstream)
    sim.content_failures = 10**6
    invitation = await gateway.invite("proxy")
    report = await gateway.candidate(invitation).run(time_limit=90)
    assert report.error is None, report.error
    await gateway.ended_record(invitation)
    async with asyncio.timeout(WITHIN):  # the first try was refused: now it waits 600 s
        while sim.content_failures == 10**6:  # noqa: ASYNC110 (the sim counts, no event)
            await asyncio.sleep(0.05)
    async with asyncio.timeout(WITHIN):
        await gateway.stop()
    assert "upstream recording downloads dropped" in caplog.text
    assert sim.content_served == []


async def test_the_upstreams_recording_goes_to_s3_when_that_is_the_storage(
    start_gateway: GatewayFactory,
    s3: S3Server,  # noqa: F811 (the fixture)
) -> None:
    gateway = await start_gateway(
        mode="proxy",
        upstream="sim-live",
        recording="audio",
        recording_storage="s3",
        recording_s3=s3.settings(),
    )
    sim = gateway.app[SIMULATED_UPSTREAM]
    assert isinstance(sim, SimulatedUpstream)
    invitation = await gateway.invite("proxy")
    ids = (invitation.tenant_id, invitation.interview_id)
    report = await gateway.candidate(invitation).run(time_limit=90)
    assert report.error is None, report.error
    await gateway.ended_record(invitation)
    rows = await segments_until(
        gateway.db, *ids, lambda rows: any(r.status == "uploaded" for r in rows), within=WITHIN
    )
    (content,) = rows
    (session,) = sim.calls.values()
    assert isinstance(session, SimulatedLiveSession)
    name = f"rec/{ids[0]}/{ids[1]}/upstream-content-00000.bin"
    assert content.storage_uri == f"s3://{BUCKET}/{name}"
    stored = s3.client().get_object(Bucket=BUCKET, Key=name)["Body"].read()
    assert stored == session.content()
