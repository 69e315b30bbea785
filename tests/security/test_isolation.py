"""Tenant A cannot see or change tenant B's interviews, transcripts or segments: through the HTTP
API, and through SQL as the gateway's own runtime role (tables of migration 0003 included)."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg import errors

from gateway.app import JWT_SECRET
from signaling.client import SignalingClient, SignalingClientError
from signaling.tokens import issue_token
from storage import interviews, tenants
from storage.database import Database
from storage.transcripts import TranscriptEntry

from .conftest import ApiTenant, GatewayFactory, make_tenant


async def seed(tenant: ApiTenant) -> str:
    """An interview with a transcript line and a video segment, made through the API."""
    gateway = tenant.gateway
    created = await tenant.create(candidate_ref=f"{tenant.id}-secret-ref")
    interview_id = uuid.UUID(str(created["id"]))
    gateway.writer.submit(
        TranscriptEntry(tenant.id, interview_id, "ev1", "candidate", "my salary was", "relay", "t")
    )
    await gateway.writer.flush()
    await interviews.add_video_segment(
        gateway.db, tenant.id, interview_id, participant="candidate", kind="video", sequence=0
    )
    return str(interview_id)


async def test_through_the_api_another_tenants_interviews_do_not_exist(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway()
    a, b = await make_tenant(gateway, http, "A"), await make_tenant(gateway, http, "B")
    a_id, b_id = await seed(a), await seed(b)
    for path in (
        f"/v1/interviews/{b_id}",
        f"/v1/interviews/{b_id}/transcript",
        f"/v1/interviews/{b_id}/transcript?format=text",
        f"/v1/interviews/{b_id}/transcript?format=vtt",
    ):
        async with await a.request("GET", path) as response:
            assert response.status == 404, path
            assert "salary" not in await response.text()
    async with await a.request("POST", f"/v1/interviews/{b_id}/end") as response:
        assert response.status == 404
    async with await a.request("GET", "/v1/interviews") as response:
        page = await response.json()
    assert [item["id"] for item in page["items"]] == [a_id] and page["total"] == 1
    # B's interview is untouched, and B still sees it whole
    async with await b.request("GET", f"/v1/interviews/{b_id}") as response:
        assert (await response.json())["status"] == "created"
    async with await b.request("GET", f"/v1/interviews/{b_id}/transcript?format=text") as r:
        assert await r.text() == "Candidate: my salary was\n"
    # an admin token is bound to its tenant the same way
    from gateway.app import JWT_SECRET
    from signaling.tokens import issue_admin_token

    token = issue_admin_token(gateway.app[JWT_SECRET], tenant_id=str(a.id))
    async with http.get(
        f"{gateway.base_url}/v1/interviews/{b_id}", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 404
    # a key that claims B's tenant but is A's secret is no key at all
    forged = a.key.replace(a.id.hex, b.id.hex)
    async with http.get(
        f"{gateway.base_url}/v1/interviews", headers={"Authorization": f"Bearer {forged}"}
    ) as response:
        assert response.status == 401


# -- SQL, as the runtime role ---------------------------------------------------------------


@pytest.fixture
async def two_tenants(db: Database) -> tuple[Any, Any]:
    out = []
    for name in ("A", "B"):
        tenant = await tenants.create_tenant(db, name)
        session = await interviews.create_session(db, tenant, requested_mode="auto")
        await tenants.create_api_key(db, tenant, name)
        assert await tenants.use_invitation(db, tenant, f"jti-{name}", session)
        out.append((tenant, session))
    return out[0], out[1]


@pytest.mark.parametrize("table", ["api_keys", "invitation_uses"])
async def test_the_new_tables_show_a_tenant_only_its_own_rows(
    db: Database, two_tenants: tuple[Any, Any], table: str
) -> None:
    (a, _), (b, _) = two_tenants
    async with db.tenant(a) as conn:
        cur = await conn.execute(f"SELECT tenant_id FROM {table}")
        assert {row[0] for row in await cur.fetchall()} == {a}
        cur = await conn.execute(
            f"UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = %s", [b]
        )
        assert cur.rowcount == 0
        cur = await conn.execute(f"DELETE FROM {table} WHERE tenant_id = %s", [b])
        assert cur.rowcount == 0
    async with db.pool.connection() as conn:  # no tenant set: nothing at all
        cur = await conn.execute(f"SELECT count(*) FROM {table}")
        assert (await cur.fetchone()) == (0,)


async def test_a_tenant_cannot_plant_keys_or_invitation_uses_for_another(
    db: Database, two_tenants: tuple[Any, Any]
) -> None:
    (a, _), (b, b_session) = two_tenants
    with pytest.raises(errors.InsufficientPrivilege):
        async with db.tenant(a) as conn:
            await conn.execute(
                "INSERT INTO api_keys (tenant_id, key_hash) VALUES (%s, %s)", [b, b"\x01" * 32]
            )
    with pytest.raises((errors.InsufficientPrivilege, errors.ForeignKeyViolation)):
        async with db.tenant(a) as conn:
            await conn.execute(
                "INSERT INTO invitation_uses (tenant_id, jti, interview_id) VALUES (%s, 'x', %s)",
                [b, b_session],
            )
    # and A cannot record a use against B's interview under its own name either
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await tenants.use_invitation(db, a, "jti-steal", b_session)
    # nor read B's interview options
    assert await interviews.get_interview_options(db, a, b_session) is None


async def test_another_tenants_token_for_a_live_interview_finds_no_interview(
    start_gateway: GatewayFactory,
) -> None:
    """A validly signed token naming tenant B and A's interview, sent while A's interview is
    live, is not welcomed into it: live sessions are found by tenant *and* interview."""
    gateway = await start_gateway(mode="proxy")
    invitation = await gateway.invite("proxy")
    candidate = SignalingClient()
    await candidate.connect(invitation.signal_url(gateway.base_url), invitation.token)
    assert gateway.sessions.live(invitation.tenant_id, invitation.interview_id) is not None
    stranger = await tenants.create_tenant(gateway.db, "stranger")
    forged = issue_token(
        gateway.app[JWT_SECRET], tenant_id=str(stranger), interview_id=str(invitation.interview_id)
    )
    async with SignalingClient() as intruder:
        with pytest.raises(SignalingClientError) as refused:
            await intruder.connect(invitation.signal_url(gateway.base_url), forged)
    assert refused.value.code == "interview_not_found"
    await candidate.ping("still-mine")  # the candidate was not replaced
    assert (await candidate.receive())["type"] == "pong"
    await candidate.close()
