"""The claim record with two fronts on one database, and a claim that finds no room."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from signaling.errors import SignalingError
from storage import workers

from .conftest import GatewayFactory, fleet_of, start_front

pytestmark = pytest.mark.slow  # worker processes


async def test_two_fronts_claiming_at_once_give_each_interview_one_worker(
    start_gateway: GatewayFactory,
) -> None:
    one = await start_front(start_gateway)
    two = await start_front(start_gateway)
    invitations = [await one.invite("proxy") for _ in range(2)]
    asks = [
        fleet_of(front_).front.worker_for(i.tenant_id, i.interview_id)
        for i in invitations
        for front_ in (one, two, one, two)
    ]
    addresses = await asyncio.wait_for(asyncio.gather(*asks), 120)
    per_interview = [set(addresses[k * 4 : k * 4 + 4]) for k in range(2)]
    assert all(len(a) == 1 for a in per_interview)  # every front routes to the same worker
    assert per_interview[0] != per_interview[1]  # and no worker serves two interviews
    started = len(await fleet_of(one).backend.list({})) + len(await fleet_of(two).backend.list({}))
    assert started == 2  # one process per interview, whichever front won its claim
    claims = [await workers.get_claim(one.db, i.interview_id) for i in invitations]
    assert all(c is not None and c.state == "ready" for c in claims)


async def test_no_room_waits_until_the_deadline_then_says_so_and_leaves_nothing(
    start_gateway: GatewayFactory,
) -> None:
    deadline = 2.0
    front = await start_front(start_gateway, max_workers=1, worker_start_timeout=90)
    fleet = fleet_of(front).front
    first, second = await front.invite("proxy"), await front.invite("proxy")
    await fleet.worker_for(first.tenant_id, first.interview_id)  # takes the only slot (cold)
    fleet.settings = dataclasses.replace(fleet.settings, worker_start_timeout=deadline)
    began = time.monotonic()
    with pytest.raises(SignalingError) as refused:
        await fleet.worker_for(second.tenant_id, second.interview_id)
    assert refused.value.code == "worker_unavailable"
    assert time.monotonic() - began >= deadline - CAPACITY_SLACK  # it waited for room
    assert await workers.get_claim(front.db, second.interview_id) is None  # nothing leaked
    assert len(await fleet_of(front).backend.list({})) == 1
    assert fleet.stats.claim_failures == 1


#: the wait ends at the last retry that fits before the deadline (``CAPACITY_RETRY`` apart)
CAPACITY_SLACK = 0.6
