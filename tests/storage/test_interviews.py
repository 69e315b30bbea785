"""Sessions: created, updated, ended once; a terminal session stays terminal."""

from __future__ import annotations

import pytest

from storage import interviews, tenants
from storage.database import Database


async def test_a_session_is_created_updated_and_ended_once(db: Database) -> None:
    tenant = await tenants.create_tenant(db, "acme")
    sid = await interviews.create_session(
        db, tenant, requested_mode="auto", candidate_ref="cand-7", metadata={"role": "SRE"}
    )
    created = await interviews.get_session(db, tenant, sid)
    assert created is not None
    assert (created.status, created.metadata, created.candidate_ref) == (
        "created",
        {"role": "SRE"},
        "cand-7",
    )

    pair = {"local": "host/udp", "remote": "srflx/udp"}
    assert await interviews.update_session(
        db,
        tenant,
        sid,
        status="active",
        actual_mode="relay",
        ice_state="connected",
        selected_pair=pair,
    )
    active = await interviews.get_session(db, tenant, sid)
    assert active is not None
    assert (active.status, active.actual_mode, active.selected_pair) == ("active", "relay", pair)
    assert active.updated_at > created.updated_at  # the trigger keeps it true

    assert await interviews.end_session(db, tenant, sid, status="failed", reason="upstream gone")
    assert not await interviews.end_session(db, tenant, sid, status="ended", reason="bye")
    assert not await interviews.update_session(db, tenant, sid, status="active")
    ended = await interviews.get_session(db, tenant, sid)
    assert ended is not None
    assert (ended.status, ended.end_reason, ended.terminal) == ("failed", "upstream gone", True)
    assert ended.ended_at is not None


async def test_terminal_statuses_only_through_end_session(db: Database) -> None:
    tenant = await tenants.create_tenant(db, "acme")
    sid = await interviews.create_session(db, tenant, requested_mode="relay")
    with pytest.raises(ValueError, match="end_session"):
        await interviews.update_session(db, tenant, sid, status="ended")
    with pytest.raises(ValueError, match="cannot set"):
        await interviews.update_session(db, tenant, sid, created_at=None)


async def test_list_sessions_returns_the_tenants_sessions_newest_first(db: Database) -> None:
    tenant = await tenants.create_tenant(db, "acme")
    other = await tenants.create_tenant(db, "other")
    ids = [await interviews.create_session(db, tenant, requested_mode="relay") for _ in range(3)]
    await interviews.create_session(db, other, requested_mode="relay")
    listed = await interviews.list_sessions(db, tenant)
    assert [s.id for s in listed] == ids[::-1]
    assert [s.id for s in await interviews.list_sessions(db, tenant, limit=1, offset=1)] == [ids[1]]


async def test_video_segments_are_recorded_and_updated(db: Database) -> None:
    tenant = await tenants.create_tenant(db, "acme")
    sid = await interviews.create_session(db, tenant, requested_mode="relay")
    seg = await interviews.add_video_segment(
        db, tenant, sid, participant="candidate", kind="video", sequence=0, codec="VP8"
    )
    assert await interviews.update_video_segment(
        db, tenant, seg, status="stored", storage_uri="file:///tmp/x.webm", bytes=1234
    )
    [stored] = await interviews.list_video_segments(db, tenant, sid)
    assert (stored.status, stored.codec, stored.bytes) == ("stored", "VP8", 1234)
    assert stored.updated_at >= stored.created_at
