"""Fleet tests run a real front (the aiohttp app with ``role="front"``) on a fresh database;
its workers are real ``serve --role worker`` processes, started by the ``local`` backend."""

from __future__ import annotations

from typing import Any

from gateway.app import FLEET
from gateway.fleet.runtime import Fleet
from tests.gateway.conftest import GatewayFactory, RunningGateway, start_gateway

__all__ = ["GatewayFactory", "RunningGateway", "fleet_of", "start_front", "start_gateway"]


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
