"""Who may join an interview, and as what: the checks a signaling socket passes before its
session sees it.

The signaling server has already checked the token's shape and signature (when the key was at
hand); everything that needs I/O or the gateway's state happens here, once, in order: finish
verifying the signature (a JWKS key not cached yet), the tenant's rate of connects, the role,
and a single-use invitation's one use. An ``interviewer`` or ``observer`` token joins the live
interview's observers instead (``sessions.observers``), once its join is on the audit record.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import uuid
from uuid import UUID

import psycopg

from gateway.http.security import RateLimiter
from gateway.sessions.connection import ConnectionHandler
from gateway.sessions.manager import SessionManager, promptly, usable
from gateway.sessions.observers import WATCHED_ENDED, Observer, ObserverHandler
from signaling.errors import SignalingError
from signaling.server import SignalingChannel
from signaling.tokens import OBSERVER_ROLES, TokenClaims, TokenVerifier
from storage import interviews, tenants
from storage import observers as audit
from storage.database import Database

log = logging.getLogger(__name__)

#: How long a leave row is retried while the database is away, and how often.
LEAVE_RETRY_FOR, LEAVE_RETRY_EVERY = 60.0, 1.0
_REASON_SHAPE = re.compile(r"[a-z][a-z0-9_]{0,63}")


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
        self.observers = ObserverAdmission()

    async def connect(
        self,
        claims: TokenClaims,
        channel: SignalingChannel,
        db: Database,
        manager: SessionManager,
    ) -> ConnectionHandler | ObserverHandler:
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
        if claims.role in OBSERVER_ROLES:
            return await self.observers.admit(claims, tenant_id, interview_id, channel, db, manager)
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


class ObserverAdmission:
    """Admits an interviewer or observer token to a live interview's hub, with its audit
    rows. Leave rows still being written are kept in ``pending`` (a test, or a shutdown, may
    wait for them)."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Task[None]] = set()

    async def admit(
        self,
        claims: TokenClaims,
        tenant_id: UUID,
        interview_id: UUID,
        channel: SignalingChannel,
        db: Database,
        manager: SessionManager,
    ) -> ObserverHandler:
        session = manager.live(tenant_id, interview_id)
        if session is None:
            await _refuse_absent(db, tenant_id, interview_id)
        assert session is not None  # _refuse_absent always raises
        session.observers.check_room()
        observer_id = uuid.uuid4()
        await promptly(
            audit.record_observer_event(
                db,
                tenant_id,
                interview_id,
                observer_id,
                subject=claims.subject,
                role=claims.role,
                event="join",
            )
        )
        # Nothing awaits from here to the handler's return: the observer's snapshot of the
        # interview and its registration for what follows are one step.
        if session.observers.ended:
            self._left(db, tenant_id, interview_id, observer_id, claims, WATCHED_ENDED)
            raise SignalingError("interview_ended", "this interview has ended")
        observer = session.observers.add(
            channel, subject=claims.subject, role=claims.role, observer_id=observer_id
        )

        def on_leave(gone: Observer, reason: str) -> None:
            self._left(db, tenant_id, interview_id, gone.id, claims, reason)

        return ObserverHandler(
            session.observers,
            observer,
            session.ice_servers.browser,
            on_leave,
            call=lambda: session.call,
        )

    def _left(
        self,
        db: Database,
        tenant_id: UUID,
        interview_id: UUID,
        observer_id: UUID,
        claims: TokenClaims,
        reason: str,
    ) -> None:
        reason = reason if _REASON_SHAPE.fullmatch(reason) else "disconnected"
        task = asyncio.ensure_future(
            _write_leave(db, tenant_id, interview_id, observer_id, claims, reason)
        )
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)


async def _refuse_absent(db: Database, tenant_id: UUID, interview_id: UUID) -> None:
    """No live session: say whether the interview is unknown, over, or not started yet."""
    record = await promptly(interviews.get_session(db, tenant_id, interview_id))
    if record is None:
        raise SignalingError("interview_not_found", "no such interview")
    if record.status in ("ended", "failed"):
        raise SignalingError("interview_ended", "this interview has ended")
    raise SignalingError("interview_not_live", "the interview has not started; retry later")


async def _write_leave(
    db: Database,
    tenant_id: UUID,
    interview_id: UUID,
    observer_id: UUID,
    claims: TokenClaims,
    reason: str,
) -> None:
    """The leave row, retried while the database is away (bounded: ``LEAVE_RETRY_FOR``)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + LEAVE_RETRY_FOR
    while True:
        try:
            await audit.record_observer_event(
                db,
                tenant_id,
                interview_id,
                observer_id,
                subject=claims.subject,
                role=claims.role,
                event="leave",
                reason=reason,
            )
            return
        except Exception as exc:
            if loop.time() >= give_up:
                log.error(
                    "observer %s: its leave could not be recorded: %r",
                    observer_id,
                    exc,
                    extra={"interview_id": str(interview_id), "tenant_id": str(tenant_id)},
                )
                return
        await asyncio.sleep(LEAVE_RETRY_EVERY)
