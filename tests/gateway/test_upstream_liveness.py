"""A relay notices a dead upstream within ``GATEWAY_UPSTREAM_TIMEOUT``, not ICE consent's ~30 s:
the simulated upstream runs as a process of its own (``interview-gateway sim-upstream``), which
the test kills or freezes mid-interview; the session ends as ``failed``/``upstream_silent``,
the candidate is told over signaling, and the row says so."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import pytest

from gateway.sessions.invitations import Invitation
from gateway.sim.candidate import HeadlessCandidate
from gateway.sim.script import Script

from .conftest import GatewayFactory, RunningGateway, row

pytestmark = pytest.mark.slow

UPSTREAM_TIMEOUT = 2.0
#: what the issue allows on top of the bound, from the upstream's death to the candidate told
TOLD_WITHIN = UPSTREAM_TIMEOUT + 1.0


@pytest.fixture
async def upstream_process() -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``sim-upstream`` on a free loopback port; resumed (if frozen) and killed at exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim-upstream", "--port", "0",
        "--words-per-second", "8",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert " listening on " in line, line
        yield process, line.split(" listening on ")[1].strip()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            await process.wait()


@pytest.fixture
async def gateway(
    start_gateway: GatewayFactory,
    upstream_process: tuple[asyncio.subprocess.Process, str],
    monkeypatch: pytest.MonkeyPatch,
) -> RunningGateway:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-upstream-liveness")  # the sim takes any key
    return await start_gateway(
        mode="relay",
        upstream="openai",
        upstream_base_url=upstream_process[1],
        upstream_timeout=UPSTREAM_TIMEOUT,
    )


async def mid_interview(gateway: RunningGateway) -> tuple[HeadlessCandidate, Invitation]:
    """A relayed candidate who has heard the first question and is answering it."""
    invitation = await gateway.invite("relay")
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    async with asyncio.timeout(20):
        while candidate.report.interviewer_turns < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return candidate, invitation


async def ends_as_upstream_silent(
    gateway: RunningGateway, upstream: asyncio.subprocess.Process, sig: signal.Signals
) -> float:
    candidate, invitation = await mid_interview(gateway)
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    assert session is not None and session.mode == "relay"
    upstream.send_signal(sig)
    hit = time.monotonic()
    with pytest.raises(RuntimeError, match="upstream_silent"):  # told: state failed, its reason
        await asyncio.wait_for(candidate.converse(), UPSTREAM_TIMEOUT + 10)
    told = time.monotonic() - hit
    assert candidate.report.states[-1] == "failed"
    await asyncio.wait_for(session.ended.wait(), 5)
    assert session.end_reason == "upstream_silent"
    record = await row(gateway, invitation.tenant_id, invitation.interview_id)
    assert (record.status, record.end_reason) == ("failed", "upstream_silent")
    await candidate.close()
    print(f"{sig.name}: the candidate was told {told:.2f} s after the upstream's {sig.name}")
    assert told >= UPSTREAM_TIMEOUT * 0.9  # the bound was waited out, not some other end
    assert told < TOLD_WITHIN, told
    return told


async def test_a_killed_upstream_ends_the_relay_within_the_bound(
    gateway: RunningGateway, upstream_process: tuple[asyncio.subprocess.Process, str]
) -> None:
    await ends_as_upstream_silent(gateway, upstream_process[0], signal.SIGKILL)


async def test_a_frozen_upstream_ends_the_relay_within_the_bound(
    gateway: RunningGateway, upstream_process: tuple[asyncio.subprocess.Process, str]
) -> None:
    await ends_as_upstream_silent(gateway, upstream_process[0], signal.SIGSTOP)
    os.kill(upstream_process[0].pid, signal.SIGCONT)  # the fixture kills it either way


async def test_a_quiet_interviewer_is_not_a_dead_one(start_gateway: GatewayFactory) -> None:
    """The interviewer says nothing while the candidate answers (each answer lasts longer than
    this bound), but its leg still carries packets: the watchdog counts packets, not speech."""
    gateway = await start_gateway(mode="relay", upstream_timeout=0.5)
    invitation = await gateway.invite("relay")
    report = await gateway.candidate(invitation).run(time_limit=60)
    assert report.error is None, report.error
    assert report.answers_spoken == len(Script.default().turns)
