"""Tenants and their credentials: the tenant row, API keys and single-use invitations.

An API key names its tenant in clear (``igw_<tenant hex>_<secret>``): the gateway must know the
tenant *before* it may look at any row, because row-level security shows a transaction only its
own tenant's rows. The key is then checked inside that tenant's transaction, by the SHA-256 of
the whole key, so a key that claims another tenant finds nothing. Only hashes are stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from uuid import UUID

from storage.database import Database

API_KEY_PREFIX = "igw_"
_API_KEY_SHAPE = re.compile(r"igw_([0-9a-f]{32})_[A-Za-z0-9_-]{43}")


async def create_tenant(db: Database, name: str) -> UUID:
    """A new tenant; its id is chosen here so the insert itself passes the tenant's policy."""
    tenant_id = uuid.uuid4()
    async with db.tenant(tenant_id) as conn:
        await conn.execute("INSERT INTO tenants (id, name) VALUES (%s, %s)", [tenant_id, name])
    return tenant_id


async def tenant_exists(db: Database, tenant_id: UUID) -> bool:
    """Whether the tenant exists (its own policy shows it only to itself)."""
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute("SELECT 1 FROM tenants WHERE id = %s", [tenant_id])
        return await cur.fetchone() is not None


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def api_key_tenant(key: str) -> UUID | None:
    """The tenant a well-formed key claims (not yet checked), or None for a malformed key."""
    match = _API_KEY_SHAPE.fullmatch(key)
    return UUID(match.group(1)) if match else None


async def create_api_key(db: Database, tenant_id: UUID, name: str = "") -> str:
    """A new key for ``tenant_id``; the only time the key itself is ever available."""
    key = f"{API_KEY_PREFIX}{tenant_id.hex}_{secrets.token_urlsafe(32)}"
    async with db.tenant(tenant_id) as conn:
        await conn.execute(
            "INSERT INTO api_keys (tenant_id, name, key_hash) VALUES (%s, %s, %s)",
            [tenant_id, name, _hash(key)],
        )
    return key


async def authenticate_api_key(db: Database, key: str) -> UUID | None:
    """The key's tenant when the key exists and is not revoked; None otherwise."""
    tenant_id = api_key_tenant(key)
    if tenant_id is None:
        return None
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(
            "SELECT 1 FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL", [_hash(key)]
        )
        found = await cur.fetchone()
    return tenant_id if found else None


async def revoke_api_key(db: Database, tenant_id: UUID, key: str) -> bool:
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_hash = %s AND revoked_at IS NULL",
            [_hash(key)],
        )
        return cur.rowcount == 1


async def use_invitation(db: Database, tenant_id: UUID, jti: str, interview_id: UUID) -> bool:
    """Record a single-use invitation's first use; False when it had been used before."""
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(
            "INSERT INTO invitation_uses (tenant_id, jti, interview_id) VALUES (%s, %s, %s)"
            " ON CONFLICT (tenant_id, jti) DO NOTHING",
            [tenant_id, jti, interview_id],
        )
        return cur.rowcount == 1


async def release_invitation(db: Database, tenant_id: UUID, jti: str) -> None:
    """Forget a use that admitted nobody (the gateway refused the socket after recording it)."""
    async with db.tenant(tenant_id) as conn:
        await conn.execute("DELETE FROM invitation_uses WHERE jti = %s", [jti])
