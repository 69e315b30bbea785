"""The ``local`` backend keeps the Machines API's contract with real worker processes:
created, started once it listens, listed by metadata, destroyed when it exits."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from gateway.fleet.backend import FLEET_KEY, CapacityError, WaitTimeout, WorkerSpec
from gateway.fleet.local import LocalBackend

pytestmark = pytest.mark.slow  # every test starts worker processes

SECRET = "local-backend-test-secret-" + "y" * 24


def spec(database_url: str, interview: str, **env: str) -> WorkerSpec:
    return WorkerSpec(
        metadata={FLEET_KEY: "test-front", "interview_id": interview},
        env={
            "DATABASE_URL": database_url,
            "GATEWAY_JWT_SECRET": SECRET,
            "GATEWAY_ROLE": "worker",
            "GATEWAY_MAX_SESSIONS": "1",
            "GATEWAY_ICE_ADDRESSES": "127.0.0.1",
            **env,
        },
    )


async def test_a_worker_goes_created_started_and_destroyed_on_stop(
    fresh_database_url: str, tmp_path: Path
) -> None:
    backend = LocalBackend(tmp_path, max_workers=2)
    worker = await backend.create(spec(fresh_database_url, "a"), skip_launch=True)
    assert worker.state == "created" and worker.address == ""
    with pytest.raises(WaitTimeout):  # created is not started: nothing runs yet
        await backend.wait(worker.id, "started", 0.2)
    await backend.start(worker.id)
    started = await backend.wait(worker.id, "started", 60)
    async with aiohttp.ClientSession() as http, http.get(started.address + "/healthz") as r:
        assert r.status == 200  # started means it serves
    assert [w.id for w in await backend.list({"interview_id": "a"})] == [worker.id]
    assert await backend.list({"interview_id": "b"}) == []
    await backend.stop(worker.id)  # SIGTERM: it drains (nothing live) and exits
    assert (await backend.wait(worker.id, "destroyed", 30)).state == "destroyed"
    assert await backend.list({}) == []
    assert not (tmp_path / worker.id).exists()  # a clean exit takes its directory along


async def test_capacity_is_a_typed_error_and_destroy_kills_a_running_worker(
    fresh_database_url: str, tmp_path: Path
) -> None:
    backend = LocalBackend(tmp_path, max_workers=1)
    worker = await backend.create(spec(fresh_database_url, "a"))
    with pytest.raises(CapacityError):
        await backend.create(spec(fresh_database_url, "b"))
    await backend.wait(worker.id, "started", 60)
    await backend.destroy(worker.id)
    assert await backend.list({}) == []
    again = await backend.create(spec(fresh_database_url, "b"), skip_launch=True)  # room again
    await backend.destroy(again.id)
    await backend.destroy(again.id)  # a gone worker is not an error


async def test_a_worker_nobody_joins_exits_after_its_idle_timeout(
    fresh_database_url: str, tmp_path: Path
) -> None:
    backend = LocalBackend(tmp_path, max_workers=1)
    idle = 1.0
    worker = await backend.create(
        spec(fresh_database_url, "a", GATEWAY_WORKER_IDLE_TIMEOUT=str(idle))
    )
    await backend.wait(worker.id, "started", 60)
    started = time.monotonic()
    await backend.wait(worker.id, "destroyed", 30)
    assert time.monotonic() - started >= idle - 0.2  # not before its timeout
