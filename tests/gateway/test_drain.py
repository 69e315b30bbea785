"""SIGTERM drains: no new interview is admitted, live ones may finish within the deadline, the
rest end as `shutdown` with their lines stored, and the process exits promptly after."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from signaling.client import SignalingClient, SignalingClientError
from storage import interviews, transcripts

from .conftest import GatewayFactory
from .served import served

pytestmark = pytest.mark.slow

DRAIN = 6.0
#: A deadline the live interview must end within by itself: generous, since the test waits
#: only as long as the interview takes, and a loaded machine slows the scripted conversation.
LONG_DRAIN = 120.0


async def readyz(base_url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/readyz") as response:
        return response.status, await response.json()


async def test_sigterm_lets_a_live_interview_finish_and_admits_no_new_one(
    start_gateway: GatewayFactory, fresh_database_url: str, tmp_path: Path
) -> None:
    # Another gateway on the database gives the test its tenant and a view of the rows.
    view = await start_gateway()
    async with served(
        fresh_database_url, tmp_path / "g", view.db, view.tenant_id,
        GATEWAY_DRAIN_TIMEOUT=str(LONG_DRAIN),
    ) as gateway:  # fmt: skip
        live, candidate = await gateway.candidate()
        waiting = await gateway.invite()  # invited, not yet joined
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.stdout is not None
        line = (await asyncio.wait_for(gateway.process.stdout.readline(), 10)).decode()
        assert line.startswith("interview-gateway: draining:"), line
        status, body = await readyz(gateway.base_url)
        assert status == 503 and "draining" in body["reasons"]  # type: ignore[operator]
        client = SignalingClient()
        with pytest.raises(SignalingClientError) as refused:
            await client.connect(waiting.signal_url(gateway.base_url), waiting.token)
        assert refused.value.code == "at_capacity"
        await client.close()
        # The live interview carries on to its own end, inside the deadline.
        await candidate.converse()
        assert candidate.client is not None
        await candidate.client.bye()
        await candidate.close()
        assert await asyncio.wait_for(gateway.process.wait(), LONG_DRAIN) == 0
    record = await interviews.get_session(view.db, live.tenant_id, live.interview_id)
    assert record is not None and (record.status, record.end_reason) == ("ended", "bye")
    rows = await transcripts.read_transcript(view.db, live.tenant_id, live.interview_id)
    assert {row.role for row in rows} == {"interviewer", "candidate"}


async def test_sigterm_ends_what_is_still_live_at_the_deadline_as_shutdown(
    start_gateway: GatewayFactory, fresh_database_url: str, tmp_path: Path
) -> None:
    view = await start_gateway()
    async with served(
        fresh_database_url, tmp_path / "g", view.db, view.tenant_id,
        GATEWAY_DRAIN_TIMEOUT=str(DRAIN),
    ) as gateway:  # fmt: skip
        live, candidate = await gateway.candidate()
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gateway.process.wait(), DRAIN + 20) == 0
        took = time.monotonic() - signalled
        await candidate.close()
    assert took >= DRAIN  # the live interview had the whole deadline
    record = await interviews.get_session(view.db, live.tenant_id, live.interview_id)
    assert record is not None and (record.status, record.end_reason) == ("failed", "shutdown")


async def test_a_second_signal_cuts_the_drain_short(
    start_gateway: GatewayFactory, fresh_database_url: str, tmp_path: Path
) -> None:
    view = await start_gateway()
    async with served(
        fresh_database_url, tmp_path / "g", view.db, view.tenant_id,
        GATEWAY_DRAIN_TIMEOUT="600",
    ) as gateway:  # fmt: skip
        live, candidate = await gateway.candidate()
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.stdout is not None
        line = (await asyncio.wait_for(gateway.process.stdout.readline(), 10)).decode()
        assert line.startswith("interview-gateway: draining:"), line
        gateway.process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(gateway.process.wait(), 30) == 0
        await candidate.close()
    record = await interviews.get_session(view.db, live.tenant_id, live.interview_id)
    assert record is not None and (record.status, record.end_reason) == ("failed", "shutdown")
