"""The ``fly`` backend's real Machines API client against the stand-in: regions without
capacity skipped, 429/5xx retried within the deadline, leases honoured, and a claim that cannot
get a Machine failing clearly for the candidate with nothing left behind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.config import FlySettings, Settings
from gateway.fleet.backend import FLEET_KEY, BackendError, CapacityError, WorkerSpec
from gateway.fleet.fly import FlyBackend
from gateway.fleet.runtime import make_backend
from signaling.client import SignalingClient
from signaling.client_protocol import SignalingClientError
from storage import workers

from .conftest import FLY_APP, FLY_TOKEN, FlyFrontFactory, Served, fleet_of

SPEC = WorkerSpec(metadata={FLEET_KEY: "test-front", "interview_id": "i-1"})


@pytest.fixture
async def fly(machines_api: Served) -> AsyncIterator[FlyBackend]:
    settings = FlySettings(
        api_url=machines_api.url,
        token=FLY_TOKEN,
        app=FLY_APP,
        image="registry.fly.io/interview-gateway:test",
        regions=("ams", "fra"),
        api_deadline=1.0,
        worker_port=machines_api.api.worker_port,
    )
    async with aiohttp.ClientSession() as http:
        yield FlyBackend(settings, http)


def creates(stand_in: Served) -> int:
    return stand_in.api.calls.count(("POST", "create"))


async def test_a_machine_is_created_as_the_contract_asks(
    fly: FlyBackend, machines_api: Served
) -> None:
    worker = await fly.create(SPEC, skip_launch=True)
    assert worker.state == "created"  # skip_launch: nothing boots
    machine = machines_api.api.machines[worker.id]
    config = machine.config
    assert config["auto_destroy"] is True and config["restart"] == {"policy": "no"}
    assert config["metadata"] == dict(SPEC.metadata)
    assert config["guest"] == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512}
    assert [w.id for w in await fly.list({"interview_id": "i-1"})] == [worker.id]
    assert await fly.list({"interview_id": "i-2"}) == []
    await fly.destroy(worker.id)
    await fly.destroy(worker.id)  # a gone Machine is not an error
    assert machines_api.api.live() == []


async def test_secrets_stay_out_of_a_machines_config(fly: FlyBackend, machines_api: Served) -> None:
    spec = WorkerSpec(
        metadata={}, env={"DATABASE_URL": "postgresql://u:p@db/x", "GATEWAY_MODE": "relay"}
    )
    worker = await fly.create(spec, skip_launch=True)
    env = machines_api.api.machines[worker.id].config["env"]
    assert "DATABASE_URL" not in env and env["GATEWAY_MODE"] == "relay"
    assert FLY_TOKEN not in str(machines_api.api.machines[worker.id].json())


async def test_a_region_without_capacity_is_skipped_for_the_next(
    fly: FlyBackend, machines_api: Served
) -> None:
    machines_api.api.full_regions = {"ams"}
    worker = await fly.create(SPEC, skip_launch=True)
    assert machines_api.api.machines[worker.id].region == "fra"
    assert creates(machines_api) == 2
    machines_api.api.full_regions = {"ams", "fra"}
    with pytest.raises(CapacityError, match="no region had room"):
        await fly.create(SPEC, skip_launch=True)
    assert len(machines_api.api.live()) == 1  # the refused creates left nothing


async def test_429_and_5xx_are_retried_until_they_pass(
    fly: FlyBackend, machines_api: Served
) -> None:
    machines_api.api.fail(429, times=2, action="create", retry_after=0.05)
    machines_api.api.fail(503, times=1, action="create")
    await fly.create(SPEC, skip_launch=True)
    assert creates(machines_api) == 4


async def test_errors_past_the_deadline_are_a_clear_error(
    fly: FlyBackend, machines_api: Served
) -> None:
    machines_api.api.fail(500, times=1000, action="create")
    with pytest.raises(BackendError, match=r"500.*still failing after 1 s"):
        await fly.create(SPEC, skip_launch=True)
    assert machines_api.api.live() == []
    assert FLY_TOKEN not in str(machines_api.api.calls)
    machines_api.api.fail(400, times=1, action="list")  # a refusal is not retried
    with pytest.raises(BackendError, match="400"):
        await fly.list({})
    assert machines_api.api.calls.count(("GET", "list")) == 1


async def test_a_machine_leased_by_another_is_not_started(
    fly: FlyBackend, machines_api: Served
) -> None:
    worker = await fly.create(SPEC, skip_launch=True)
    async with aiohttp.ClientSession() as http:  # someone else (an operator) holds a lease
        lease_url = f"{machines_api.url}/v1/apps/{FLY_APP}/machines/{worker.id}/lease"
        headers = {"Authorization": f"Bearer {FLY_TOKEN}"}
        async with http.post(lease_url, json={"ttl": 60}, headers=headers) as held:
            assert held.status == 201
    with pytest.raises(BackendError, match="409"):
        await fly.start(worker.id, metadata={"interview_id": "i-9"})
    assert machines_api.api.machines[worker.id].state == "created"
    assert machines_api.api.machines[worker.id].config["metadata"]["interview_id"] == "i-1"


@pytest.mark.slow  # a front, its database and a cold Machine's worker
async def test_a_claim_the_api_keeps_refusing_tells_the_candidate_and_leaks_nothing(
    start_fly_front: FlyFrontFactory, machines_api: Served
) -> None:
    front = await start_fly_front(
        worker_pool=1, worker_start_timeout=3.0, fly={"api_deadline": 0.5}
    )
    fleet = fleet_of(front)
    await fleet.pool.full()  # one Machine created, not started
    [pooled] = machines_api.api.live()
    machines_api.api.fail(503, times=10_000, action="start")
    machines_api.api.full_regions = {"ams"}  # the refill (and any cold create) finds no room
    invitation = await front.invite("proxy")
    client = SignalingClient()
    with pytest.raises(SignalingClientError) as refused:
        await client.connect(invitation.signal_url(front.base_url), invitation.token)
    await client.close()
    assert refused.value.code == "worker_unavailable"
    assert await workers.get_claim(front.db, invitation.interview_id) is None
    assert pooled.state == "destroyed"  # the Machine it could not start is gone
    assert machines_api.api.live() == []
    assert fleet.front.stats.claim_failures == 1


@pytest.mark.slow  # two Machines boot
async def test_a_worker_that_idled_out_before_its_candidate_came_is_replaced(
    start_fly_front: FlyFrontFactory, machines_api: Served
) -> None:
    front = await start_fly_front(worker_idle_timeout=1.0, worker_start_timeout=60.0)
    fleet = fleet_of(front)
    invitation = await front.invite("proxy")
    ids = (invitation.tenant_id, invitation.interview_id)
    await fleet.front.worker_for(*ids)  # nobody joins: the worker exits after 1 s
    claim = await workers.get_claim(front.db, invitation.interview_id)
    assert claim is not None and claim.worker_id is not None
    await fleet.backend.wait(claim.worker_id, "destroyed", 30)
    assert await fleet.reaper.reap() == 1  # its claim, not the live interview's
    assert await workers.get_claim(front.db, invitation.interview_id) is None
    await fleet.front.worker_for(*ids)  # the candidate's next attempt: a new worker
    again = await workers.get_claim(front.db, invitation.interview_id)
    assert again is not None and again.worker_id not in (None, claim.worker_id)


async def test_a_relay_worker_machine_gets_a_udp_service_and_binds_fly_global_services(
    fly: FlyBackend, machines_api: Served
) -> None:
    """Fly delivers UDP only to a ``udp`` service with the same port inside and out, and only
    to a socket bound to ``fly-global-services``: with relay media on port 3478, the Machine's
    config says both, and the environment is one a worker starts with."""
    assert [
        s["protocol"]
        for s in machines_api.api.machines[(await fly.create(SPEC, skip_launch=True)).id].config[
            "services"
        ]
    ] == ["tcp"]  # no relay media port: no UDP service
    relay = FlyBackend(
        fly.settings, fly.http, media_udp_port=3478, public_addresses=("203.0.113.7",)
    )
    worker = await relay.create(SPEC, skip_launch=True)
    config = machines_api.api.machines[worker.id].config
    [tcp, udp] = config["services"]
    assert tcp["protocol"] == "tcp" and tcp["internal_port"] == fly.settings.worker_port
    assert udp == {"protocol": "udp", "internal_port": 3478, "ports": [{"port": 3478}]}
    env = config["env"]
    assert env["GATEWAY_ICE_UDP_PORT"] == "3478"
    assert env["GATEWAY_ICE_BIND_ADDRESS"] == "fly-global-services"
    assert env["GATEWAY_ICE_PUBLIC_ADDRESSES"] == "203.0.113.7"
    # a worker starts with it (fly-global-services resolves on Fly only: an address here)
    on_fly = {**env, "GATEWAY_ICE_BIND_ADDRESS": "127.0.0.1", "DATABASE_URL": "postgresql://d/x"}
    settings = Settings.from_env(on_fly)
    assert settings.ice_udp_port == 3478 and settings.ice_bind_addresses == ("127.0.0.1",)
    assert settings.ice_public_addresses == ("203.0.113.7",)


def test_a_front_gives_its_workers_udp_only_when_it_relays_media() -> None:
    base = {
        "GATEWAY_BACKEND": "fly",
        "FLY_API_TOKEN": FLY_TOKEN,
        "GATEWAY_FLY_APP": FLY_APP,
        "GATEWAY_FLY_IMAGE": "img",
        "GATEWAY_ICE_UDP_PORT": "3478",
    }
    for mode, port in [("relay", 3478), ("auto", 3478), ("proxy", 0)]:
        settings = Settings.from_env({**base, "GATEWAY_MODE": mode})
        backend = make_backend(settings, None)  # type: ignore[arg-type]  # no call made
        assert isinstance(backend, FlyBackend) and backend.media_udp_port == port, mode
