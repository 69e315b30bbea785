"""Interviews through a front, on the ``local`` backend and on the ``fly`` backend against the
Machines API stand-in: each on a worker process of its own, its signaling forwarded, its
transcript stored by the worker, the worker gone afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.fleet.local import LocalBackend
from gateway.sim.script import Script
from storage import transcripts, workers

from .conftest import GatewayFactory, RunningGateway, Served, fleet_of, start_front

pytestmark = pytest.mark.slow  # whole interviews, worker processes

SCRIPT = Script.default()
TRANSCRIPT_LINES = 2 * len(SCRIPT.turns) + 1
LOST_AFTER = 3.0


async def live_workers(front: RunningGateway) -> list[Any]:
    return await fleet_of(front).backend.list({})


async def metric_samples(front: RunningGateway) -> dict[tuple[str, tuple[Any, ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(front.base_url + "/metrics") as r:
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@dataclasses.dataclass
class Backend:
    """How a test starts a front on one backend, and kills one of its workers' processes."""

    start: Callable[..., Awaitable[RunningGateway]]
    pid: Callable[[RunningGateway, str], int | None]


@pytest.fixture(params=["local", "fly"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "local":
        start_gateway: GatewayFactory = request.getfixturevalue("start_gateway")

        def local_pid(front: RunningGateway, worker_id: str) -> int | None:
            local = fleet_of(front).backend
            assert isinstance(local, LocalBackend)
            return local.pid(worker_id)

        return Backend(lambda **kw: start_front(start_gateway, **kw), local_pid)
    stand_in: Served = request.getfixturevalue("machines_api")
    return Backend(
        request.getfixturevalue("start_fly_front"), lambda _, machine: stand_in.api.pid(machine)
    )


async def test_five_concurrent_interviews_get_five_workers_and_leave_none(
    backend: Backend,
) -> None:
    # lost_after as deployed: five relays on a loaded machine can stall a worker's heartbeat
    # past a tighter bound, and a live interview must not be taken for lost
    # proxy mode: five relays (ten peers in workers, five candidates here) starve a loaded
    # two-core machine into ICE consent failures; the routing under test is the same
    front = await backend.start(
        mode="proxy", worker_pool=5, lost_after=15.0, worker_start_timeout=90.0
    )
    await asyncio.wait_for(fleet_of(front).pool.full(), 90)  # warm: a claim is a take
    invitations = [await front.invite("proxy") for _ in range(5)]
    candidates = [front.candidate(invitation) for invitation in invitations]
    if fleet_of(front).backend.name == "fly":
        # claimed at once, before the candidates come: a claim boots a pooled (skip_launch)
        # Machine, and five booting on a loaded machine outlast a candidate's wait for welcome
        front_ = fleet_of(front).front
        claimed = [front_.worker_for(i.tenant_id, i.interview_id) for i in invitations]
        await asyncio.wait_for(asyncio.gather(*claimed), 120)

    async def take(index: int) -> Any:
        candidate = candidates[index]
        await candidate.connect()
        claim = await workers.get_claim(front.db, invitations[index].interview_id)
        assert claim is not None and claim.state == "ready" and claim.worker_id is not None
        await candidate.converse()
        await candidate.client.bye()  # type: ignore[union-attr]
        await candidate.close()
        return claim.worker_id

    worker_ids = await asyncio.wait_for(asyncio.gather(*(take(i) for i in range(5))), 120)
    assert len(set(worker_ids)) == 5  # one worker per interview
    for worker_id in worker_ids:  # each worker exits once its interview is over
        await fleet_of(front).backend.wait(worker_id, "destroyed", 30)
    fleet = fleet_of(front)
    assert {w.id for w in await live_workers(front)} <= fleet.pool.ids  # only the refilled pool
    for invitation in invitations:
        rows = await transcripts.read_transcript(
            front.db, invitation.tenant_id, invitation.interview_id
        )
        assert len({row.event_id for row in rows}) == TRANSCRIPT_LINES
        record = await front.ended_record(invitation)
        assert (record.status, record.end_reason) == ("ended", "bye")
    await fleet.reaper.reap()  # (its timer may have taken some of the five already)
    assert fleet.reaper.reaped >= 5  # the five claims of finished interviews
    scraped = await metric_samples(front)
    assert scraped[("gateway_fleet_claims_total", (("outcome", "ready"),))] == 5
    assert scraped[("gateway_fleet_claim_seconds_count", ())] == 5
    assert scraped[("gateway_fleet_orphans_reaped_total", ())] >= 5
    exits = [v for (name, _), v in scraped.items() if name == "gateway_fleet_worker_exits_total"]
    assert sum(exits) >= 5
    for invitation in invitations:
        assert await workers.get_claim(front.db, invitation.interview_id) is None


async def test_a_killed_worker_is_worker_lost_within_the_bound_and_the_candidate_told(
    backend: Backend,
) -> None:
    front = await backend.start(lost_after=LOST_AFTER, worker_pool=1)
    await asyncio.wait_for(fleet_of(front).pool.full(), 90)
    invitation = await front.invite("relay")
    candidate = front.candidate(invitation)
    await candidate.connect()
    claim = await workers.get_claim(front.db, invitation.interview_id)
    assert claim is not None and claim.worker_id is not None
    pid = backend.pid(front, claim.worker_id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed_at = asyncio.get_running_loop().time()
    with pytest.raises(RuntimeError, match="worker_lost"):
        await asyncio.wait_for(candidate.converse(), 10)  # a clear error, not a bare close
    await candidate.close()
    await fleet_of(front).backend.wait(claim.worker_id, "destroyed", 10)  # its Machine too
    # the front's reconciler finalizes it once the worker's heartbeat lapses, on its next pass
    async with asyncio.timeout(LOST_AFTER * 3 + 5):
        while (record := await front.ended_record(invitation)).ended_at is None:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert (record.status, record.end_reason) == ("failed", "worker_lost")
    assert asyncio.get_running_loop().time() - killed_at >= LOST_AFTER - 1.0  # not before
    await fleet_of(front).reaper.reap()
    assert await workers.get_claim(front.db, invitation.interview_id) is None
