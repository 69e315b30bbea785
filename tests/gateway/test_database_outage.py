"""A database that goes away loses no session state: a join is refused at once and can be
retried with the same link, an interview that ends meanwhile is recorded once it is back, and
an interview that goes on carries on."""

from __future__ import annotations

import asyncio

import pytest

from signaling.client import SignalingClient, SignalingClientError
from storage import transcripts
from tests.outages import outage

from .conftest import GatewayFactory, row, until_status

pytestmark = pytest.mark.slow


async def test_joining_during_an_outage_is_refused_at_once_and_the_link_still_works(
    start_gateway: GatewayFactory, postgres_url: str, fresh_database_url: str
) -> None:
    gateway = await start_gateway(mode="relay")
    invitation = await gateway.invite("relay")
    with outage(postgres_url, fresh_database_url):
        client = SignalingClient()
        with pytest.raises(SignalingClientError) as refused:
            # well inside the client's own 10 s and the pool's 30 s
            await asyncio.wait_for(
                client.connect(invitation.signal_url(gateway.base_url), invitation.token), 8
            )
        assert refused.value.code == "database_unavailable"
        await client.close()
    report = await gateway.candidate(invitation).run(time_limit=60)  # the same single-use link
    assert report.error is None, report.error


async def test_an_interview_that_ends_during_an_outage_is_recorded_when_it_is_back(
    start_gateway: GatewayFactory, postgres_url: str, fresh_database_url: str
) -> None:
    gateway = await start_gateway(mode="relay")
    ending, going_on = await gateway.invite("relay"), await gateway.invite("relay")
    leaving, staying = gateway.candidate(ending), gateway.candidate(going_on)
    await leaving.connect()
    await staying.connect()
    await until_status(gateway, ending.tenant_id, ending.interview_id, {"active"}, 15)
    with outage(postgres_url, fresh_database_url):
        assert leaving.client is not None
        await leaving.client.bye()  # ends while the database is away
        await leaving.close()
        session = gateway.sessions.live(ending.tenant_id, ending.interview_id)
        if session is not None:
            await asyncio.wait_for(session.ended.wait(), 10)  # it does not wait for the row
        # the tenant's slot is free at once, though the row cannot say so yet
        assert gateway.sessions.live(ending.tenant_id, ending.interview_id) is None
    record = await until_status(
        gateway, ending.tenant_id, ending.interview_id, {"ended", "failed"}, 30
    )
    assert (record.status, record.end_reason) == ("ended", "bye")
    # the other interview went on through the outage, to its own end
    await staying.converse()
    assert staying.client is not None
    await staying.client.bye()
    await staying.close()
    record = await until_status(
        gateway, going_on.tenant_id, going_on.interview_id, {"ended", "failed"}, 30
    )
    assert (record.status, record.end_reason) == ("ended", "bye")
    await gateway.writer.flush()
    rows = await transcripts.read_transcript(gateway.db, going_on.tenant_id, going_on.interview_id)
    assert [r.role for r in rows][-1] == "interviewer" and len(rows) >= 5
    assert (await row(gateway, going_on.tenant_id, going_on.interview_id)).connected_at is not None
