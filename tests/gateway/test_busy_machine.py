"""Relay interviews survive a starved scheduler: ten at once, while two CPU burners of the test's
own keep both cores busy, all run to their end with every line stored (the in-process simulated
upstream shares the gateway's event loop, the harshest case: both ends of every upstream leg
lag together)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

#: Each burner spins for at most this long, whatever happens to the test.
BURN_SECONDS = 240


async def test_ten_relay_interviews_complete_on_a_machine_kept_busy(
    fresh_database_url: str, tmp_path: Path
) -> None:
    burn = (
        f"import time\nend = time.monotonic() + {BURN_SECONDS}\nwhile time.monotonic() < end: pass"
    )
    burners = [await asyncio.create_subprocess_exec(sys.executable, "-c", burn) for _ in range(2)]
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "simulate",
            "--interviews", "10", "--mode", "relay", "--json",
            env={**os.environ, "DATABASE_URL": fresh_database_url,
                 "GATEWAY_DATA_DIR": str(tmp_path)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        stdout, _ = await asyncio.wait_for(process.communicate(), BURN_SECONDS)
    finally:
        for burner in burners:
            burner.kill()
            await burner.wait()
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    assert (report["completed"], report["errors"]) == (10, [])
    assert report["transcripts_persisted"] == report["transcripts_expected"] > 0
    assert (report["lost"], report["duplicates"]) == (0, 0)
    assert process.returncode == 0
