"""Recording into S3-compatible storage, and storage that goes away mid-interview.

The S3 server is moto's (``ThreadedMotoServer`` on loopback): a stand-in for the remote
service, answering the S3 REST API as AWS documents it, path-style. Its buckets live in this
process, so stopping the server and starting it again on the same port is an outage that
loses nothing already stored, as a real one would. The objects are read back with boto3, a
client other than the gateway's own (obstore).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import aiohttp
import boto3
import pytest
from moto.server import ThreadedMotoServer

from gateway.recording import opus
from gateway.recording.storage import S3Settings, S3Storage
from storage import tenants
from storage.interviews import VideoSegmentRecord

from .conftest import GatewayFactory
from .test_recording import by_track, read_segment, segments_until

pytestmark = pytest.mark.slow

BUCKET = "interviews"
KEY_ID, SECRET = "AKIDTESTRECORDING", "test-secret-access-key-recording"


class S3Server:
    """moto's S3 on a loopback port that stays the same across ``stop`` and ``start``."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop()

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def settings(self) -> S3Settings:
        return S3Settings(
            bucket=BUCKET,
            endpoint=self.endpoint,
            prefix="rec",
            access_key_id=KEY_ID,
            secret_access_key=SECRET,
        )


@pytest.fixture
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.client().create_bucket(Bucket=BUCKET)
    try:
        yield server
    finally:
        server.stop()


def count(rows: list[VideoSegmentRecord], status: str) -> dict[str, int]:
    return {name: sum(r.status == status for r in t) for name, t in by_track(rows).items()}


async def test_segments_queue_on_disk_while_s3_is_away_and_upload_when_it_returns(
    start_gateway: GatewayFactory, s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await start_gateway(
        mode="relay",
        recording="audio",
        recording_segment_seconds=1.0,
        recording_storage="s3",
        recording_s3=s3.settings(),
        recording_retry_seconds=0.2,
    )
    invitation = await gateway.invite("relay")
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    ids: tuple[UUID, UUID] = (invitation.tenant_id, invitation.interview_id)
    rows = await segments_until(
        gateway.db,
        *ids,
        lambda rows: len(by_track(rows)) == 2 and min(count(rows, "uploaded").values()) >= 2,
        within=15,
    )
    s3.stop()
    # storage away: the interview goes on, its segments wait in the spool as `stored`
    uploaded = count(rows, "uploaded")
    rows = await segments_until(
        gateway.db,
        *ids,
        lambda rows: min(count(rows, "stored").values(), default=0) >= 2,
        within=15,
    )
    assert gateway.sessions.live(*ids) is not None
    spooled = [r for r in rows if r.status == "stored"]
    spool = tmp_path / "recording-spool" / str(ids[0]) / str(ids[1])
    assert {p.name for p in spool.iterdir()} >= {Path(r.storage_uri or "").name for r in spooled}
    assert count(rows, "uploaded") == uploaded  # nothing pretended to be uploaded meanwhile
    # the interview ends while storage is still away; its recording cannot be deleted yet
    # (the spooled segments would come back at the gateway's next start)
    assert candidate.client is not None
    await candidate.client.bye()
    await candidate.close()
    await gateway.ended_record(invitation)
    api_key = await tenants.create_api_key(gateway.db, ids[0], "owner")
    authorized = {"Authorization": f"Bearer {api_key}"}
    recordings = f"{gateway.base_url}/v1/interviews/{ids[1]}/recordings"
    async with aiohttp.ClientSession() as http:
        async with http.delete(recordings, headers=authorized) as response:
            assert response.status == 409
            assert (await response.json())["error"]["code"] == "upload_pending"
    s3.start()
    rows = await segments_until(
        gateway.db, *ids, lambda rows: all(r.status == "uploaded" for r in rows), within=15
    )

    client = s3.client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"rec/{ids[0]}/{ids[1]}/")
    assert {o["Key"]: o["Size"] for o in listed["Contents"]} == {
        f"rec/{ids[0]}/{ids[1]}/{r.participant}-audio-{r.sequence:05d}.opus": r.bytes for r in rows
    }
    for record in rows:
        assert record.storage_uri == f"s3://{BUCKET}/rec/{ids[0]}/{ids[1]}/" + (
            f"{record.participant}-audio-{record.sequence:05d}.opus"
        )
        path = tmp_path / "fetched.opus"
        key = record.storage_uri.removeprefix(f"s3://{BUCKET}/")
        path.write_bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        samples, _ = read_segment(path)
        assert abs(samples * 1000 / opus.RATE - (record.duration_ms or 0)) <= 1
    assert not list(spool.iterdir())  # the spooled copies are gone once uploaded
    # what recovery asks of a segment its spool no longer holds: is it in the bucket?
    storage = S3Storage(s3.settings())
    key = f"{ids[0]}/{ids[1]}/candidate-audio-00000.opus"
    assert await storage.find(key) == f"s3://{BUCKET}/rec/{key}"
    assert await storage.find(key.replace("00000", "99999")) is None
    # the admin API reads the voices back out of the bucket, and deletes them from it
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{recordings}/candidate-audio", headers=authorized) as response:
            assert response.status == 200
            track = tmp_path / "track.ogg"
            track.write_bytes(await response.read())
        candidate_rows = by_track(rows)["candidate"]
        samples, _ = read_segment(track)
        assert (
            abs(samples * 1000 / opus.RATE - sum(r.duration_ms or 0 for r in candidate_rows)) <= 1
        )
        async with http.delete(recordings, headers=authorized) as response:
            assert response.status == 204
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix=f"rec/{ids[0]}/")
    assert "not uploaded" in caplog.text  # the refusals were logged...
    assert SECRET not in caplog.text  # ...and the credentials never
