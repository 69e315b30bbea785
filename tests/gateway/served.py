"""A gateway run as its user runs it, ``interview-gateway serve`` in a process of its own, for
the tests that signal or kill it; candidates are invited into it through the shared database."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from gateway.sessions.invitations import Invitation, invite
from gateway.sim.candidate import HeadlessCandidate
from gateway.sim.script import Script
from storage.database import Database
from tests.gateway.conftest import TEST_END_LINGER

SECRET = "served-gateway-test-secret-" + "z" * 24


@dataclass
class Served:
    process: asyncio.subprocess.Process
    base_url: str
    db: Database
    tenant_id: UUID
    #: the line it printed once listening
    banner: str

    async def invite(self) -> Invitation:
        return await invite(self.db, SECRET, self.tenant_id, mode="relay")

    async def candidate(self) -> tuple[Invitation, HeadlessCandidate]:
        """An invited candidate, connected to this gateway."""
        invitation, candidate = await self.invited()
        await candidate.connect()
        return invitation, candidate

    async def invited(self) -> tuple[Invitation, HeadlessCandidate]:
        """An invited candidate of this gateway, not yet connected."""
        invitation = await self.invite()
        candidate = HeadlessCandidate(
            invitation.signal_url(self.base_url),
            invitation.token,
            interview_id=str(invitation.interview_id),
            answers=[turn.answer for turn in Script.default().turns],
            words_per_second=8.0,
        )
        return invitation, candidate

    async def output(self) -> str:
        """What it printed, once it has exited."""
        assert self.process.stdout is not None
        return (await self.process.stdout.read()).decode()


@asynccontextmanager
async def served(
    database_url: str, data_dir: Path, db: Database, tenant_id: UUID, **env: str
) -> AsyncIterator[Served]:
    """``serve`` on a free port in relay mode, with ``GATEWAY_*`` overrides; killed at exit
    whatever the test asserted."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--port", "0", "--no-invite",
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_JWT_SECRET": SECRET,
            "GATEWAY_ICE_ADDRESSES": "127.0.0.1",
            "GATEWAY_MODE": "relay",
            "GATEWAY_END_LINGER": str(TEST_END_LINGER),  # tests end with bye (see conftest)
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert " listening on " in line, line
        yield Served(process, line.split(" listening on ")[1].split()[0], db, tenant_id, line)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
