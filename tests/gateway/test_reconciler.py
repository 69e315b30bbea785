"""A gateway that dies leaves no row `active`: the next one finalizes its interviews as
`gateway_lost`, and never touches those of a gateway that is alive."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from gateway.app import RECONCILER

from .conftest import GatewayFactory, row, until_status
from .served import served

LOST_AFTER = 2.0


async def test_a_lapsed_gateways_interviews_are_finalized_and_a_live_ones_are_not(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay", lost_after=LOST_AFTER)
    live = await gateway.invite("relay")
    candidate = gateway.candidate(live)
    await candidate.connect()
    # Another gateway on the same database served this interview and stopped beating.
    orphan = await gateway.invite("relay")
    async with gateway.db.tenant(orphan.tenant_id) as conn:
        await conn.execute(
            "UPDATE interview_sessions SET status = 'active' WHERE id = %s", [orphan.interview_id]
        )
    async with gateway.db.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO gateways (id, heartbeat_at) VALUES"
            " ('00000000-0000-4000-8000-000000000001', now() - interval '1 hour')"
        )
        await conn.execute(
            "INSERT INTO session_claims (interview_id, tenant_id, gateway_id) VALUES"
            " (%s, %s, '00000000-0000-4000-8000-000000000001')",
            [orphan.interview_id, orphan.tenant_id],
        )
    reconciler = gateway.app[RECONCILER]
    assert await reconciler.reconcile() == 1
    record = await row(gateway, orphan.tenant_id, orphan.interview_id)
    assert (record.status, record.end_reason) == ("failed", "gateway_lost")
    await until_status(gateway, live.tenant_id, live.interview_id, {"active"}, 10)
    assert await reconciler.reconcile() == 0  # its own live interview is not a dead one's
    await candidate.close()


@pytest.mark.slow
async def test_a_killed_gateways_interviews_end_as_gateway_lost_after_the_bound(
    start_gateway: GatewayFactory, fresh_database_url: str, tmp_path: Path
) -> None:
    # A second gateway, alive throughout, with a live interview of its own.
    # (its interviewer's closing line must not end the interview while the test waits)
    survivor = await start_gateway(
        mode="relay", lost_after=LOST_AFTER, end_phrase="words no script says"
    )
    its_own = await survivor.invite("relay")
    its_candidate = survivor.candidate(its_own)
    await its_candidate.connect()

    # The gateway to be killed: the real command, in a process of its own.
    async with served(
        fresh_database_url,
        tmp_path / "doomed",
        survivor.db,
        survivor.tenant_id,
        GATEWAY_LOST_AFTER=str(LOST_AFTER),
    ) as doomed:
        joined = [await doomed.candidate() for _ in range(3)]
        for invitation, _ in joined:
            await until_status(
                survivor, invitation.tenant_id, invitation.interview_id, {"active"}, 15
            )
        doomed.process.send_signal(signal.SIGKILL)
        await doomed.process.wait()
        killed_at = asyncio.get_running_loop().time()
        for invitation, _ in joined:
            record = await until_status(
                survivor,
                invitation.tenant_id,
                invitation.interview_id,
                {"ended", "failed"},
                LOST_AFTER * 3 + 10,
            )
            assert (record.status, record.end_reason) == ("failed", "gateway_lost")
        # not before the bound: a gateway that merely paused is not taken for dead
        assert asyncio.get_running_loop().time() - killed_at >= LOST_AFTER - 1.0
        record = await row(survivor, its_own.tenant_id, its_own.interview_id)
        assert record.status == "active"  # the live gateway's interview is untouched
        for _, candidate in joined:
            await candidate.close()
    await its_candidate.close()
