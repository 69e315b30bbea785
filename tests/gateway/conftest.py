"""A real gateway for each test: the aiohttp app on 127.0.0.1, a fresh database, the in-process
simulated upstream, and ICE pinned to loopback (the suite runs in a loopback-only namespace)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiohttp import web

from gateway.app import DATABASE, JWT_SECRET, SESSIONS, WRITER, create_app
from gateway.config import Settings
from gateway.sessions.invitations import Invitation, invite
from gateway.sessions.manager import SessionManager
from gateway.sim.candidate import HeadlessCandidate
from gateway.sim.script import Script
from storage import interviews, tenants
from storage.database import Database
from storage.interviews import SessionRecord
from storage.transcripts import TranscriptWriter

FAST_SPEECH = 8.0  # words per second: keeps a whole scripted interview to a few seconds
#: seconds the scripted closing line leaves before it ends the interview, in tests
TEST_END_LINGER = 120.0


@dataclasses.dataclass
class RunningGateway:
    app: web.Application
    runner: web.AppRunner
    base_url: str
    tenant_id: Any

    @property
    def db(self) -> Database:
        return self.app[DATABASE]

    @property
    def writer(self) -> TranscriptWriter:
        return self.app[WRITER]

    @property
    def sessions(self) -> SessionManager:
        return self.app[SESSIONS]

    async def invite(self, mode: str = "auto") -> Invitation:
        return await invite(self.db, self.app[JWT_SECRET], self.tenant_id, mode=mode)

    async def ended_record(self, invitation: Invitation, within: float = 15.0) -> SessionRecord:
        """The session's row once the session has ended: the browser may hear the socket
        close a moment before the gateway records why, and on a busy machine a state write
        can outlast its timeout and go by the journal, applied a backoff later."""
        session = self.sessions.live(invitation.tenant_id, invitation.interview_id)
        if session is not None:
            await asyncio.wait_for(session.ended.wait(), within)
        await asyncio.wait_for(self.sessions.state.settled(), within)
        record = await interviews.get_session(
            self.db, invitation.tenant_id, invitation.interview_id
        )
        assert record is not None
        return record

    def candidate(self, invitation: Invitation, **kwargs: Any) -> HeadlessCandidate:
        answers = [turn.answer for turn in Script.default().turns]
        return HeadlessCandidate(
            invitation.signal_url(self.base_url),
            invitation.token,
            interview_id=str(invitation.interview_id),
            answers=answers,
            words_per_second=FAST_SPEECH,
            **kwargs,
        )

    async def stop(self) -> None:
        await self.runner.cleanup()


GatewayFactory = Callable[..., Awaitable[RunningGateway]]


async def row(gateway: RunningGateway, tenant: UUID, interview: UUID) -> SessionRecord:
    record = await interviews.get_session(gateway.db, tenant, interview)
    assert record is not None
    return record


async def until_status(
    gateway: RunningGateway, tenant: UUID, interview: UUID, statuses: set[str], within: float
) -> SessionRecord:
    """The row once it reaches one of ``statuses`` (the database is the only witness here:
    the process that wrote it may be dead)."""
    async with asyncio.timeout(within):
        while (record := await row(gateway, tenant, interview)).status not in statuses:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return record


@pytest.fixture
async def start_gateway(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Start a gateway with settings overrides; every one started is stopped after the test."""
    started: list[RunningGateway] = []

    async def start(**overrides: Any) -> RunningGateway:
        settings = Settings(
            database_url=fresh_database_url,
            data_dir=tmp_path,
            jwt_secret="test-secret-" + "x" * 32,
            ice_addresses=("127.0.0.1",),
            # the suite runs on loopback: its peers' candidates are 127.0.0.1, allowed here
            ice_allow_remote=("127.0.0.0/8",),
            sim_words_per_second=FAST_SPEECH,
            # the scripted closing line ends an interview END_LINGER after it; tests that end
            # with bye get time for it on a loaded machine (those about the closing set it)
            end_linger=TEST_END_LINGER,
        )
        settings = dataclasses.replace(settings, **overrides)
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        tenant_id = await tenants.create_tenant(app[DATABASE], "tests")
        gateway = RunningGateway(app, runner, f"http://127.0.0.1:{port}", tenant_id)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.stop()
