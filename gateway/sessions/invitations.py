"""Invitations: an interview row plus a candidate token, the link that carries both, and
the admission of the sockets that present them.

The admin API and the ``invite`` command create them; ``serve`` uses them to print a
ready-to-use link, and ``simulate`` to set up its interviews.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg

from gateway.http.security import RateLimiter
from signaling.errors import SignalingError
from signaling.tokens import TokenClaims, TokenVerifier, issue_token
from storage import interviews, tenants
from storage.database import Database

if TYPE_CHECKING:  # the session manager loads aiortc; ``invite`` callers need none of it
    from gateway.sessions.session import SessionManager
    from signaling.server import SignalingChannel, SignalingHandler


@dataclass(frozen=True, slots=True)
class Invitation:
    tenant_id: UUID
    interview_id: UUID
    token: str
    expires_at: datetime | None = None

    def room_url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/interview/{self.interview_id}#token={self.token}"

    def signal_url(self, base_url: str) -> str:
        ws = base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{ws.rstrip('/')}/v1/interviews/{self.interview_id}/signal"


async def invite(
    db: Database,
    secret: str,
    tenant_id: UUID,
    *,
    mode: str = "auto",
    candidate_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
    ttl: float = 24 * 3600,
    audience: str | None = None,
    single_use: bool = True,
    max_duration: int | None = None,
    upstream_session: dict[str, Any] | None = None,
) -> Invitation:
    """Create an interview for ``tenant_id`` and a candidate token for it, valid ``ttl`` s."""
    interview_id = await interviews.create_session(
        db, tenant_id, requested_mode=mode, candidate_ref=candidate_ref, metadata=metadata
    )
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    await interviews.set_interview_options(
        db,
        tenant_id,
        interview_id,
        expires_at=expires_at,
        max_duration_s=max_duration,
        upstream_session=upstream_session,
    )
    token = issue_token(
        secret,
        tenant_id=str(tenant_id),
        interview_id=str(interview_id),
        role="candidate",
        ttl=ttl,
        audience=audience,
        single_use=None if single_use else False,
    )
    return Invitation(tenant_id, interview_id, token, expires_at)


class Admission:
    """Admits a signaling socket whose token's shape passed: the asynchronous checks, then the
    session manager.

    In order: finish verifying the signature (a JWKS key not cached yet), the tenant's rate of
    connects, the role, and a single-use invitation's one use. A used invitation still admits
    its holder while the interview's session is live, so a candidate whose network dropped can
    come back with the same link; once the session is over it gets ``invitation_used``. A use
    that the session manager then refuses (the tenant at its limit, say) is given back, so the
    candidate can try again later with the same link.
    """

    def __init__(self, verifier: TokenVerifier, limiter: RateLimiter) -> None:
        self.verifier = verifier
        self.limiter = limiter

    async def connect(
        self,
        claims: TokenClaims,
        channel: SignalingChannel,
        db: Database,
        manager: SessionManager,
    ) -> SignalingHandler:
        claims = await self.verifier.confirm(claims)
        wait = self.limiter.take(claims.tenant_id)
        if wait > 0:
            raise SignalingError(
                "rate_limited", f"too many connections; retry in {math.ceil(wait)} s"
            )
        if claims.role != "candidate":
            raise SignalingError("role_not_allowed", f"a {claims.role} cannot join this way yet")
        if not claims.single_use:
            return await manager.connect(claims, channel)
        assert claims.jti is not None  # the verifier insists on one
        try:
            tenant_id, interview_id = UUID(claims.tenant_id), UUID(claims.interview_id)
        except ValueError:
            raise SignalingError("token_invalid", "token names no valid interview") from None
        try:
            first = await tenants.use_invitation(db, tenant_id, claims.jti, interview_id)
        except psycopg.errors.ForeignKeyViolation:
            raise SignalingError("interview_not_found", "no such interview") from None
        if not first and interview_id not in manager.sessions:
            raise SignalingError("invitation_used", "this invitation was already used")
        try:
            return await manager.connect(claims, channel)
        except SignalingError:
            if first:
                await tenants.release_invitation(db, tenant_id, claims.jti)
            raise


async def default_tenant(db: Database, data_dir: Path) -> UUID:
    """The tenant that ``serve`` invites into when nobody configured one; kept across runs."""
    path = data_dir / "default-tenant"
    if path.exists():
        tenant_id = UUID(path.read_text().strip())
        if await tenants.tenant_exists(db, tenant_id):
            return tenant_id
    tenant_id = await tenants.create_tenant(db, "default")
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(str(tenant_id))
    return tenant_id
