"""Fleet tests run a real front (the aiohttp app with ``role="front"``) on a fresh database;
its workers are real ``serve --role worker`` processes, started by the ``local`` backend, or
by the Machines API stand-in (``gateway.sim.machines``) for the ``fly`` backend's real client."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import FLEET
from gateway.config import FlySettings
from gateway.fleet.runtime import Fleet
from gateway.sim.machines import Served, serve
from tests.gateway.conftest import GatewayFactory, RunningGateway, start_gateway

__all__ = [
    "GatewayFactory",
    "RunningGateway",
    "fleet_of",
    "machines_api",
    "start_fly_front",
    "start_front",
    "start_gateway",
]

FLY_TOKEN = "fly-test-token-" + "z" * 20
FLY_APP = "interview-gateway-workers"
SECRET = "test-secret-" + "x" * 32  # start_gateway's


def fleet_of(gateway: RunningGateway) -> Fleet:
    return gateway.app[FLEET]


async def start_front(start_gateway: GatewayFactory, **overrides: Any) -> RunningGateway:
    """A front in relay mode, with no warm pool unless asked (each worker costs a process)."""
    settings: dict[str, Any] = {
        "role": "front",
        "mode": "relay",
        "worker_pool": 0,
    }
    return await start_gateway(**{**settings, **overrides})


@pytest.fixture
async def machines_api(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    """The Machines API stand-in on loopback, holding the workers' app secrets (database,
    signing secret); every Machine left is destroyed afterwards."""
    async with serve(
        token=FLY_TOKEN,
        app_name=FLY_APP,
        data_dir=tmp_path / "machines",
        app_secrets={"DATABASE_URL": fresh_database_url, "GATEWAY_JWT_SECRET": SECRET},
    ) as served:
        yield served


FlyFrontFactory = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
def start_fly_front(machines_api: Served, start_gateway: GatewayFactory) -> FlyFrontFactory:
    """Fronts on the ``fly`` backend against the stand-in (set up first, so that it outlives
    them: a front destroys its Machines when it stops). They forward signaling (``routing``
    ``forward``): nothing here replays requests as Fly's proxy would."""

    async def start(*, fly: dict[str, Any] | None = None, **overrides: Any) -> RunningGateway:
        settings = FlySettings(
            api_url=machines_api.url,
            token=FLY_TOKEN,
            app=FLY_APP,
            image="registry.fly.io/interview-gateway:test",
            routing="forward",
            api_deadline=3.0,
            worker_port=machines_api.api.worker_port,
        )
        settings = dataclasses.replace(settings, **(fly or {}))
        return await start_front(start_gateway, backend="fly", fly=settings, **overrides)

    return start
