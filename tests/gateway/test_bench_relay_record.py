"""``interview-gateway bench relay --record`` runs small, as a real command, and keeps issue 17's
JSON contract: a ``recorded`` object of exactly three keys, from recordings that really wrote,
and nothing left behind in the database."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import psycopg
import pytest

pytestmark = pytest.mark.slow  # four set-ups, each a relay process and two peer processes

RECORDED_KEYS = {"cpu_percent_per_session", "delivered_ratio", "bytes_per_minute_per_session"}


async def test_bench_relay_record_reports_the_recorded_set_up_and_removes_its_tenant(
    fresh_database_url: str,
) -> None:
    command = [sys.executable, "-m", "gateway.cli", "bench", "relay", "--sessions", "1"]
    command += ["--baseline-sessions", "1", "--duration", "2", "--record", "--json"]
    process = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, "DATABASE_URL": fresh_database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, out.decode()
    lines = out.decode().strip().splitlines()
    report = json.loads(lines[-1])
    recorded = report["recorded"]
    assert set(recorded) == RECORDED_KEYS
    assert recorded["bytes_per_minute_per_session"] > 0  # the recordings wrote Ogg
    assert 0 < recorded["delivered_ratio"] <= 1
    assert recorded["cpu_percent_per_session"] > 0
    assert {"direct", "fast", "baseline"} <= set(report)
    assert any(line.startswith("recording: ") for line in lines)  # the text says the cost
    async with await psycopg.AsyncConnection.connect(fresh_database_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM tenants")
        assert await cur.fetchone() == (0,)
        cur = await conn.execute("SELECT count(*) FROM video_segments")
        assert await cur.fetchone() == (0,)
