"""The registry of live interviews, and the resources their sessions share.

Nobody else touches the registry: connections join through ``join`` (after admission), the
admin API ends an interview through ``end``, health and metrics read counts. Relay capacity is
handed out as leases: a session holds one while it relays and gives it back, once, however it
ends, so the count of used slots cannot drift. A lease is its tenant's too: with
``max_relay_per_tenant`` set, one tenant holds at most that many, so it cannot take every slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

import psycopg
from psycopg_pool import PoolTimeout

from gateway.config import Settings
from gateway.sessions.connection import ConnectionHandler
from gateway.sessions.quality import TurnLatencies
from gateway.sessions.session import EndStatus, InterviewSession
from gateway.sessions.transcript import stored_lines
from gateway.upstream.call import CallFactory
from signaling.errors import SignalingError
from signaling.server import SignalingChannel
from signaling.turn import IceServerMinter
from storage import gateways, interviews, transcripts
from storage.database import Database
from storage.session_state import StateWriter
from storage.transcripts import TranscriptWriter

log = logging.getLogger(__name__)

#: How long shutdown waits for ended sessions' records to reach the database.
SHUTDOWN_RECORD_TIMEOUT = 5.0
#: Seconds admitting a connection waits for the database before it says so.
DATABASE_WAIT = 2.0
#: Failures after which an interview cannot start again with the same link (the link rule:
#: a link stays usable until its interview has really happened, i.e. ``ended``, or expired).
FINAL_FAILURES = frozenset({"integrity_violation"})


def usable(record: interviews.SessionRecord) -> bool:
    """Whether the interview's link may still start it: it has not ended, and it did not fail
    in a way that ends it for good (a failed interview, unreachable interviewer, lost
    candidate, crash or shutdown, starts again)."""
    if record.status == "ended":
        return False
    return record.status != "failed" or record.end_reason not in FINAL_FAILURES


T = TypeVar("T")


async def promptly(query: Awaitable[T]) -> T:
    """A database call on the admission path: a database that does not answer within
    ``DATABASE_WAIT`` is a prompt, retryable ``database_unavailable``, not a hang."""
    try:
        async with asyncio.timeout(DATABASE_WAIT):
            return await query
    except (TimeoutError, PoolTimeout, psycopg.OperationalError):
        raise SignalingError(
            "database_unavailable", "the gateway cannot reach its database; retry shortly"
        ) from None


@dataclass
class SessionStats:
    """Process-wide counters, exported as metrics."""

    started: int = 0
    relay: int = 0
    proxy: int = 0
    fallbacks: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    bad_events: int = 0
    #: integrity events (refused client events, undone session changes), by kind
    integrity: dict[str, int] = field(default_factory=dict)
    #: relayed turns' response latencies (``sessions.quality``)
    turn_latency: TurnLatencies = field(default_factory=TurnLatencies)


class RelayLease:
    """One relay slot, held by one session of ``tenant_id``; ``release`` gives it back once."""

    def __init__(self, manager: SessionManager, tenant_id: UUID) -> None:
        self._manager: SessionManager | None = manager
        self.tenant_id = tenant_id

    def release(self) -> None:
        manager, self._manager = self._manager, None
        if manager is not None:
            manager._leases.discard(self)


class SessionManager:
    """Live interviews keyed by interview id (each belongs to exactly one tenant)."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database,
        writer: TranscriptWriter,
        state: StateWriter,
        calls: CallFactory,
        gateway_id: UUID,
    ) -> None:
        self.settings = settings
        #: this process's id in the claims that tell a live gateway's interviews from a dead one's
        self.gateway_id = gateway_id
        self.db = db
        self.writer = writer
        #: where every session's state changes go (in order, journaled while the database is away)
        self.state = state
        self.calls = calls
        self.ice_servers = IceServerMinter(
            configured=settings.ice_servers,
            turn_urls=settings.turn_urls,
            secret=settings.turn_secret,
            ttl=settings.turn_ttl,
        )
        self.stats = SessionStats()
        self._sessions: dict[UUID, InterviewSession] = {}
        self._leases: set[RelayLease] = set()
        #: sessions being created: interview -> (tenant, the creation)
        self._creating: dict[UUID, tuple[UUID, asyncio.Future[InterviewSession]]] = {}
        #: end records still on their way to the database
        self._records: set[asyncio.Task[None]] = set()
        #: set while draining: no new interview is admitted, live ones may finish
        self.draining = False
        self._emptied = asyncio.Event()
        #: set once a first session has started...
        self.admitted = asyncio.Event()
        #: ...and this once a session has ended and none is live or being set up: a worker, which
        #: serves one interview, exits then (``gateway.fleet.worker``)
        self.served = asyncio.Event()

    # -- reading ------------------------------------------------------------------------

    def live(self, tenant_id: UUID, interview_id: UUID) -> InterviewSession | None:
        """The tenant's live session of this interview, if there is one."""
        session = self._sessions.get(interview_id)
        return session if session is not None and session.tenant_id == tenant_id else None

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[InterviewSession]:
        """The live sessions (for the metrics' per-interview figures)."""
        return list(self._sessions.values())

    def tenant_sessions(self, tenant_id: UUID) -> int:
        """How many live sessions one tenant has, counting those being set up
        (``max_sessions_per_tenant`` bounds it)."""
        live = sum(1 for s in self._sessions.values() if s.tenant_id == tenant_id)
        return live + sum(1 for tenant, _ in self._creating.values() if tenant == tenant_id)

    @property
    def relay_slots_used(self) -> int:
        return len(self._leases)

    def session_capacity_left(self) -> int | None:
        """How many more interviews this process takes (None: no limit), counting those
        being set up."""
        if not self.settings.max_sessions:
            return None
        return max(0, self.settings.max_sessions - len(self._sessions) - len(self._creating))

    def relay_capacity_left(self) -> int:
        return max(0, self.settings.max_relay_sessions - len(self._leases))

    def tenant_relay_share_left(self, tenant_id: UUID) -> int | None:
        """How many more relay slots the tenant may hold (None: no share is set)."""
        share = self.settings.max_relay_per_tenant
        if not share:
            return None
        return max(0, share - sum(1 for lease in self._leases if lease.tenant_id == tenant_id))

    # -- changing -----------------------------------------------------------------------

    def lease_relay(self, tenant_id: UUID) -> RelayLease | None:
        """A relay slot for one of the tenant's sessions, or None when every slot is taken or
        the tenant holds its share (``tenant_relay_share_left`` tells which)."""
        if self.relay_capacity_left() <= 0 or self.tenant_relay_share_left(tenant_id) == 0:
            return None
        lease = RelayLease(self, tenant_id)
        self._leases.add(lease)
        return lease

    async def join(
        self, tenant_id: UUID, interview_id: UUID, channel: SignalingChannel
    ) -> ConnectionHandler:
        """Attach an admitted connection to its interview's session, creating it if needed.
        A connection that did not create the session must present its reconnect secret."""
        session = self.live(tenant_id, interview_id)
        if session is None:
            session, created = await self._session_for(tenant_id, interview_id)
        else:
            created = False
        if not created:
            session.check_rejoin(channel.reconnect_secret)
        handler = ConnectionHandler(session, channel)
        await session.attach(handler)
        return handler

    async def end(
        self, tenant_id: UUID, interview_id: UUID, status: EndStatus, reason: str
    ) -> bool:
        """End a live session (the admin API); False when there is none."""
        session = self.live(tenant_id, interview_id)
        if session is None:
            return False
        await session.end(status, reason)
        return True

    def session_ended(self, session: InterviewSession, record: asyncio.Task[None]) -> None:
        """A session is over: it leaves the registry (its tenant's slot is free at once) while
        its end record, which may wait for the database, goes on in ``record``."""
        if self._sessions.get(session.interview_id) is session:
            del self._sessions[session.interview_id]
        self.stats.ended[session.end_reason or "unknown"] = (
            self.stats.ended.get(session.end_reason or "unknown", 0) + 1
        )
        self._records.add(record)
        record.add_done_callback(self._records.discard)
        if not self._sessions and not self._creating:
            self.served.set()
        self._check_emptied()

    def _check_emptied(self) -> None:
        if not self._sessions and not self._creating:
            self._emptied.set()

    async def drain(self, seconds: float) -> None:
        """Admit no new interview and wait, ``seconds`` at most, for the live ones to
        end by themselves (a reconnect to a live one is still admitted)."""
        self.draining = True
        self._emptied.clear()
        self._check_emptied()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._emptied.wait(), seconds)

    async def _session_for(
        self, tenant_id: UUID, interview_id: UUID
    ) -> tuple[InterviewSession, bool]:
        """Create the interview's session once, however many connections ask at the same time;
        True for the one connection whose asking created it.

        Creation is single-flight per interview (not one lock for all: a burst of interviews
        starting together must not queue behind each other's database reads).
        """
        pending = self._creating.get(interview_id)
        created = pending is None
        if pending is None:
            if self.tenant_sessions(tenant_id) >= self.settings.max_sessions_per_tenant:
                raise SignalingError("at_capacity", "your organisation's live interview limit")
            if self.draining:
                raise SignalingError("at_capacity", "this gateway is shutting down; try again")
            if self.session_capacity_left() == 0:
                raise SignalingError("at_capacity", "this gateway serves no more interviews")
            future = asyncio.ensure_future(self._create(tenant_id, interview_id))
            future.add_done_callback(lambda f: self._creating.pop(interview_id, None))
            future.add_done_callback(lambda f: self._check_emptied())
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # observed
            pending = self._creating[interview_id] = (tenant_id, future)
        elif pending[0] != tenant_id:
            raise SignalingError("interview_not_found", "no such interview")
        return await asyncio.shield(pending[1]), created

    async def _create(self, tenant_id: UUID, interview_id: UUID) -> InterviewSession:
        record = await promptly(interviews.get_session(self.db, tenant_id, interview_id))
        if record is None:
            raise SignalingError("interview_not_found", "no such interview")
        if not usable(record) or self.state.end_pending(interview_id):
            raise SignalingError("interview_ended", "this interview has already ended")
        if record.status == "failed":  # it did not take place: this link starts it again
            await promptly(interviews.reopen_session(self.db, tenant_id, interview_id))
            log.info(
                "interview %s failed (%s) and starts again",
                interview_id,
                record.end_reason,
                extra={"interview_id": str(interview_id), "tenant_id": str(tenant_id)},
            )
        options = await promptly(interviews.get_interview_options(self.db, tenant_id, interview_id))
        # what an earlier process (crashed, restarted) or failed session had of the interview
        earlier = await promptly(transcripts.read_transcript(self.db, tenant_id, interview_id))
        await promptly(gateways.claim(self.db, self.gateway_id, tenant_id, interview_id))
        limit = self.settings.session_time_limit
        session = InterviewSession(
            self,
            tenant_id,
            interview_id,
            record.requested_mode,
            time_limit=min(limit, (options and options.max_duration_s) or limit),
            upstream_session=options.upstream_session if options else None,
            recording=options.recording if options else None,
            earlier=stored_lines(earlier),
        )
        self._sessions[interview_id] = session
        self.stats.started += 1
        self.admitted.set()
        return session

    async def close(self) -> None:
        """Shutdown: end every live session, then give their end records a moment to land."""
        results = await asyncio.gather(
            *(s.end("failed", "shutdown") for s in list(self._sessions.values())),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("a session failed to end at shutdown", exc_info=result)
        if self._records:
            _, pending = await asyncio.wait(self._records, timeout=SHUTDOWN_RECORD_TIMEOUT)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if pending:
                log.error("%d sessions' end could not be recorded before shutdown", len(pending))
