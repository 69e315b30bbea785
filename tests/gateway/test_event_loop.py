"""``GATEWAY_EVENT_LOOP=uvloop``: the gateway as its user runs it, on uvloop's event loop, with
every relay leg's ICE on the shared UDP port (the hot path's reaches into aioice's sockets and
the mux's reader, on the loop they were not first written for)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config import ConfigError, Settings
from storage import interviews, transcripts
from tests.udp import free_udp_port

from .conftest import GatewayFactory
from .served import served
from .test_interviews import TRANSCRIPT_LINES

pytestmark = pytest.mark.slow

INTERVIEWS = 3


async def test_relayed_interviews_through_the_shared_port_complete_on_uvloop(
    start_gateway: GatewayFactory, fresh_database_url: str, tmp_path: Path
) -> None:
    view = await start_gateway()  # the tenant, and a view of the rows
    port = free_udp_port()
    async with served(
        fresh_database_url, tmp_path / "g", view.db, view.tenant_id,
        GATEWAY_EVENT_LOOP="uvloop", GATEWAY_ICE_UDP_PORT=str(port),
    ) as gateway:  # fmt: skip
        assert "event loop uvloop" in gateway.banner, gateway.banner
        invited = [await gateway.invited() for _ in range(INTERVIEWS)]
        reports = await asyncio.gather(*(c.run(time_limit=150) for _, c in invited))
        assert [r.error for r in reports] == [None] * INTERVIEWS
        for invitation, _ in invited:
            async with asyncio.timeout(30):  # the last line and the end, as the process writes
                while True:
                    record = await interviews.get_session(
                        view.db, invitation.tenant_id, invitation.interview_id
                    )
                    rows = await transcripts.read_transcript(
                        view.db, invitation.tenant_id, invitation.interview_id
                    )
                    if record is not None and record.status == "ended":
                        if len(rows) == TRANSCRIPT_LINES:
                            break
                    await asyncio.sleep(0.1)
            assert (record.end_reason, record.actual_mode) == ("bye", "relay")
            assert str(record.selected_pair).startswith(f"host udp 127.0.0.1:{port} -> ")


def test_an_unknown_event_loop_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_EVENT_LOOP is 'trio'; it must be one of"):
        Settings.from_env({"GATEWAY_EVENT_LOOP": "trio"})
