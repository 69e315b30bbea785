"""Who may join an interview, and as what: the checks a signaling socket passes before its
session sees it.

The signaling server has already checked the token's shape and signature (when the key was at
hand); everything that needs I/O or the gateway's state happens here, once, in order: finish
verifying the signature (a JWKS key not cached yet), the tenant's rate of connects, the role,
and a single-use invitation's one use.
"""

from __future__ import annotations

import math
from uuid import UUID

import psycopg

from gateway.http.security import RateLimiter
from gateway.sessions.manager import SessionManager, promptly, usable
from gateway.sessions.session import ConnectionHandler
from signaling.errors import SignalingError
from signaling.server import SignalingChannel
from signaling.tokens import TokenClaims, TokenVerifier
from storage import interviews, tenants
from storage.database import Database


class Admission:
    """Admits a signaling socket whose token's shape passed: the asynchronous checks, then the
    session manager.

    In order: finish verifying the signature (a JWKS key not cached yet), the tenant's rate of
    connects, the role, and a single-use invitation's one use. A used invitation still admits
    its holder while the interview's session is live (with its reconnect secret), so a
    candidate whose network dropped can come back with the same link, and while the interview
    has not really happened (a failure, a crash: ``manager.usable``); once it has ended it
    gets ``invitation_used``. A use
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
    ) -> ConnectionHandler:
        claims = await self.verifier.confirm(claims)
        if not claims.verified:  # confirm() raises rather than leave it so; never admit unchecked
            raise SignalingError("token_invalid", "the token's signature is unchecked")
        try:
            tenant_id, interview_id = UUID(claims.tenant_id), UUID(claims.interview_id)
        except ValueError:
            raise SignalingError("token_invalid", "token names no valid interview") from None
        wait = self.limiter.take(claims.tenant_id)
        if wait > 0:
            raise SignalingError(
                "rate_limited", f"too many connections; retry in {math.ceil(wait)} s"
            )
        if claims.role != "candidate":
            raise SignalingError("role_not_allowed", f"a {claims.role} cannot join this way yet")
        if not claims.single_use:
            return await manager.join(tenant_id, interview_id, channel)
        assert claims.jti is not None  # the verifier insists on one
        try:
            first = await promptly(tenants.use_invitation(db, tenant_id, claims.jti, interview_id))
        except psycopg.errors.ForeignKeyViolation:
            raise SignalingError("interview_not_found", "no such interview") from None
        if not first and manager.live(tenant_id, interview_id) is None:
            record = await promptly(interviews.get_session(db, tenant_id, interview_id))
            if record is None or not usable(record):
                raise SignalingError("invitation_used", "this invitation was already used")
        try:
            return await manager.join(tenant_id, interview_id, channel)
        except SignalingError:
            if first:
                await promptly(tenants.release_invitation(db, tenant_id, claims.jti))
            raise
