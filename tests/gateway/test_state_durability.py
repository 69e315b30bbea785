"""Session rows as durable as the transcripts: a gateway (``serve``, a real process) whose
database goes away mid-interview, and which is then stopped or killed before it is back, leaves
its state changes in its journal; the next gateway on the same data directory (started in the
test's process, to save an interpreter's start) replays them, so every row ends final and
correct, with every transcript line."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from uuid import UUID

import pytest

from gateway.sessions.invitations import Invitation
from gateway.sim.candidate import HeadlessCandidate
from storage import transcripts
from storage.interviews import SessionRecord
from tests.outages import outage

from .conftest import GatewayFactory, RunningGateway, until_status
from .served import Served, served

pytestmark = pytest.mark.slow

#: psycopg_pool's default wait for a connection, which the old recorder gave up after
POOL_TIMEOUT = 30.0
DRAIN = 2.0
LOST_AFTER = 2.0


async def a_view(start_gateway: GatewayFactory) -> RunningGateway:
    """A gateway in the test's process, for its tenant and its view of the rows; it never
    takes the served gateway for dead during the test."""
    return await start_gateway(lost_after=3600)


async def joined(gateway: Served, view: RunningGateway) -> tuple[Invitation, HeadlessCandidate]:
    invitation, candidate = await gateway.candidate()
    await until_status(view, invitation.tenant_id, invitation.interview_id, {"active"}, 15)
    return invitation, candidate


async def journaled_end(data_dir: Path, interview_id: UUID, within: float = 15) -> None:
    """The gateway has put the interview's end in its state journal (the database is away)."""
    needle = f'"i":"{interview_id}","k":"end"'.encode()
    async with asyncio.timeout(within):
        while not any(needle in p.read_bytes() for p in (data_dir / "state-journal").glob("*")):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def final_row(view: RunningGateway, invitation: Invitation) -> SessionRecord:
    return await until_status(
        view, invitation.tenant_id, invitation.interview_id, {"ended", "failed"}, 20
    )


async def stored_whole(view: RunningGateway, invitation: Invitation, seen: list[dict]) -> int:
    """Every line the candidate saw is stored, once each, in a dense reading order (the next
    gateway replays the transcript journal in the background: waited for)."""
    wanted = {(line["role"], line["text"]) for line in seen}
    async with asyncio.timeout(20):
        while True:
            rows = await transcripts.read_transcript(
                view.db, invitation.tenant_id, invitation.interview_id
            )
            if wanted <= {(r.role, r.text) for r in rows}:
                break
            await asyncio.sleep(0.1)
    assert len({r.event_id for r in rows}) == len(rows)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    return len(rows)


async def test_rows_stay_true_through_an_outage_longer_than_the_pool_and_a_sigterm_in_it(
    start_gateway: GatewayFactory, postgres_url: str, fresh_database_url: str, tmp_path: Path
) -> None:
    view = await a_view(start_gateway)
    data_dir = tmp_path / "gateway"
    env = {"GATEWAY_DRAIN_TIMEOUT": str(DRAIN)}
    async with served(fresh_database_url, data_dir, view.db, view.tenant_id, **env) as gateway:
        ending, leaving = await joined(gateway, view)
        going_on, staying = await joined(gateway, view)
        with outage(postgres_url, fresh_database_url):
            down = time.monotonic()
            assert leaving.client is not None
            await leaving.client.bye()  # one interview ends while the database is away
            await leaving.close()
            await journaled_end(data_dir, ending.interview_id)
            ended_by = time.time()
            await staying.converse()  # the other goes on: the whole interview, no database
            # ...and the outage lasts longer than the pool's own timeout
            await asyncio.sleep(max(0.0, down + POOL_TIMEOUT + 2 - time.monotonic()))
            signalled = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)  # still live at the drain deadline
            assert await asyncio.wait_for(gateway.process.wait(), DRAIN + 30) == 0
            took = time.monotonic() - signalled
            print(f"SIGTERM with the database down: exited after {took:.1f} s (drain {DRAIN} s)")
            assert took < DRAIN + 15  # was 35 s: the pool's timeout, then more
            await staying.close()
    # the next gateway on the same data directory replays both journals
    restarted = time.monotonic()
    await start_gateway(data_dir=data_dir)
    record = await final_row(view, ending)
    assert (record.status, record.end_reason) == ("ended", "bye")
    assert record.ended_at is not None and record.ended_at.timestamp() <= ended_by
    record = await final_row(view, going_on)
    assert (record.status, record.end_reason) == ("failed", "shutdown")
    print(f"both rows final {time.monotonic() - restarted:.1f} s after the restart began")
    assert record.connected_at is not None and record.actual_mode == "relay"
    assert await stored_whole(view, going_on, staying.report.transcript) >= 5
    await stored_whole(view, ending, leaving.report.transcript)


async def test_rows_stay_true_when_the_gateway_is_killed_while_the_database_is_away(
    start_gateway: GatewayFactory, postgres_url: str, fresh_database_url: str, tmp_path: Path
) -> None:
    view = await a_view(start_gateway)
    data_dir = tmp_path / "gateway"
    env = {"GATEWAY_LOST_AFTER": str(LOST_AFTER)}
    async with served(fresh_database_url, data_dir, view.db, view.tenant_id, **env) as gateway:
        ending, leaving = await joined(gateway, view)
        going_on, staying = await joined(gateway, view)
        with outage(postgres_url, fresh_database_url):
            assert leaving.client is not None
            await leaving.client.bye()
            await leaving.close()
            await journaled_end(data_dir, ending.interview_id)
            ended_by = time.time()
            async with asyncio.timeout(20):  # the other interview goes on, a line or two
                while len(staying.report.transcript) < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            gateway.process.send_signal(signal.SIGKILL)
            await gateway.process.wait()
            seen = list(staying.report.transcript)
            await staying.close()
    restarted = time.monotonic()
    await start_gateway(data_dir=data_dir, lost_after=LOST_AFTER)  # the next one, same data dir
    record = await final_row(view, ending)  # replayed from the killed process's journal
    assert (record.status, record.end_reason) == ("ended", "bye")
    assert record.ended_at is not None and record.ended_at.timestamp() <= ended_by
    record = await final_row(view, going_on)  # live when its process died
    assert (record.status, record.end_reason) == ("failed", "gateway_lost")
    print(f"both rows final {time.monotonic() - restarted:.1f} s after the restart began")
    assert record.connected_at is not None
    await stored_whole(view, going_on, seen)
