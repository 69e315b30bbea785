"""Fixtures for the security tests: the real gateway of tests/gateway, and tenants with keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import aiohttp
import pytest

from storage import tenants
from tests.gateway.conftest import GatewayFactory, RunningGateway, start_gateway

__all__ = ["ApiTenant", "GatewayFactory", "RunningGateway", "start_gateway"]


@dataclass
class ApiTenant:
    """A tenant with an API key, and an HTTP client that presents it."""

    id: UUID
    key: str
    gateway: RunningGateway
    http: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return self.gateway.base_url + path

    async def request(self, method: str, path: str, **kwargs: object) -> aiohttp.ClientResponse:
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return await self.http.request(method, self.url(path), headers=headers, **kwargs)  # type: ignore[arg-type]

    async def create(self, **body: object) -> dict[str, Any]:
        async with await self.request("POST", "/v1/interviews", json=body) as response:
            assert response.status == 201, await response.text()
            return await response.json()


async def make_tenant(gateway: RunningGateway, http: aiohttp.ClientSession, name: str) -> ApiTenant:
    tenant_id = await tenants.create_tenant(gateway.db, name)
    key = await tenants.create_api_key(gateway.db, tenant_id, name)
    return ApiTenant(tenant_id, key, gateway, http)


@pytest.fixture
async def http() -> object:
    async with aiohttp.ClientSession() as session:
        yield session
