"""``interview-gateway bench fleet`` runs small, as a real command, and keeps its JSON contract."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

pytestmark = pytest.mark.slow  # a front, a Machines API stand-in and two worker processes

KEYS = {
    "interviews",
    "completed",
    "distinct_workers",
    "leaked_workers",
    "claim_ms",
    "connected_ms",
    "transcripts_expected",
    "transcripts_persisted",
}


async def test_bench_fleet_on_the_stand_in_reports_its_keys_and_leaks_nothing(
    fresh_database_url: str,
) -> None:
    command = [sys.executable, "-m", "gateway.cli", "bench", "fleet", "--interviews", "2"]
    command += ["--pool", "2", "--backend", "fly-sim", "--json"]
    process = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, "DATABASE_URL": fresh_database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0, out.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert set(report) == KEYS
    assert set(report["claim_ms"]) == set(report["connected_ms"]) == {"p50", "p95"}
    assert report["interviews"] == 2 and report["transcripts_expected"] == 14
    assert report["leaked_workers"] == 0
    assert report["completed"] <= report["distinct_workers"] <= 2  # a worker per interview
