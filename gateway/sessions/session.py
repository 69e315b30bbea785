"""One ``InterviewSession`` per live interview: its lifecycle, its mode, its limits.

A session outlives the signaling connections that drive it: a candidate whose network drops
comes back on a new WebSocket with a new peer connection, and in relay mode the AI conversation
carries on. ``SessionManager`` is the registry that hands each new connection its session, and
``ConnectionHandler`` is what the signaling server talks to for one connection.

Whatever happens — bye, a dead peer, the time limit, an upstream failure, shutdown — a session
ends exactly once, in a recorded state (``ended`` or ``failed``) with a reason, and its upstream
call is hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from gateway.config import Settings
from gateway.media.relay import Relay, RelayUnavailable, parse_candidate
from gateway.sessions.events import EventError, TranscriptEvent, parse_event, transcript_event
from gateway.upstream.openai import RealtimeUpstream, UpstreamError
from gateway.upstream.proxy import ProxyCall
from signaling.server import (
    Answer,
    IceCandidate,
    SignalingChannel,
    SignalingError,
    SignalingHandler,
)
from signaling.tokens import TokenClaims
from storage import interviews
from storage.database import Database
from storage.transcripts import TranscriptEntry, TranscriptWriter

log = logging.getLogger(__name__)

Source = Literal["relay", "sideband", "client"]
#: Live transcript lines waiting for the browser; beyond this, deltas are dropped (finals are
#: stored regardless, so nothing durable depends on this queue).
LIVE_LINES = 512
#: How long ending a session waits for its queued state updates to reach the database.
RECORD_DRAIN_TIMEOUT = 2.0


@dataclass
class SessionStats:
    """Process-wide counters, exported as metrics."""

    started: int = 0
    relay: int = 0
    proxy: int = 0
    fallbacks: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    bad_events: int = 0


class SessionManager:
    """The registry of live sessions and the resources they share."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database,
        writer: TranscriptWriter,
        upstream: RealtimeUpstream,
    ) -> None:
        self.settings = settings
        self.db = db
        self.writer = writer
        self.upstream = upstream
        self.sessions: dict[UUID, InterviewSession] = {}
        self.relayed = 0
        self.stats = SessionStats()
        #: sessions being created: interview -> (tenant, the creation)
        self._creating: dict[UUID, tuple[UUID, asyncio.Future[InterviewSession]]] = {}

    def relay_capacity_left(self) -> int:
        return max(0, self.settings.max_relay_sessions - self.relayed)

    def tenant_sessions(self, tenant_id: UUID) -> int:
        """How many live sessions one tenant has, counting those being set up
        (``max_sessions_per_tenant`` bounds it)."""
        live = sum(1 for s in self.sessions.values() if s.tenant_id == tenant_id)
        return live + sum(1 for tenant, _ in self._creating.values() if tenant == tenant_id)

    async def connect(self, claims: TokenClaims, channel: SignalingChannel) -> SignalingHandler:
        """The signaling server's handler factory: attach a new connection to its session."""
        try:
            tenant_id, interview_id = UUID(claims.tenant_id), UUID(claims.interview_id)
        except ValueError:
            raise SignalingError("token_invalid", "token names no valid interview") from None
        if not claims.verified:  # the admission confirms JWKS signatures before this
            raise SignalingError("token_invalid", "the token's signature is unchecked")
        session = self.sessions.get(interview_id)
        if session is None:
            session = await self._session_for(tenant_id, interview_id)
        handler = ConnectionHandler(session, channel)
        await session.attach(handler)
        return handler

    async def _session_for(self, tenant_id: UUID, interview_id: UUID) -> InterviewSession:
        """Create the interview's session once, however many connections ask at the same time.

        Creation is single-flight per interview (not one lock for all: a burst of interviews
        starting together must not queue behind each other's database reads).
        """
        pending = self._creating.get(interview_id)
        if pending is None:
            if self.tenant_sessions(tenant_id) >= self.settings.max_sessions_per_tenant:
                raise SignalingError("at_capacity", "your organisation's live interview limit")
            future = asyncio.ensure_future(self._create(tenant_id, interview_id))
            future.add_done_callback(lambda f: self._creating.pop(interview_id, None))
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # observed
            pending = self._creating[interview_id] = (tenant_id, future)
        return await asyncio.shield(pending[1])

    async def _create(self, tenant_id: UUID, interview_id: UUID) -> InterviewSession:
        record = await interviews.get_session(self.db, tenant_id, interview_id)
        if record is None:
            raise SignalingError("interview_not_found", "no such interview")
        if record.status in ("ended", "failed"):
            raise SignalingError("interview_ended", "this interview has already ended")
        options = await interviews.get_interview_options(self.db, tenant_id, interview_id)
        limit = self.settings.session_time_limit
        session = InterviewSession(
            self,
            tenant_id,
            interview_id,
            record.requested_mode,
            time_limit=min(limit, (options and options.max_duration_s) or limit),
            upstream_session=options.upstream_session if options else None,
        )
        self.sessions[interview_id] = session
        self.stats.started += 1
        return session

    async def close(self) -> None:
        """Shutdown: end every live session, in a recorded state."""
        await asyncio.gather(
            *(s.end("failed", "shutdown") for s in list(self.sessions.values())),
            return_exceptions=True,
        )


class ConnectionHandler(SignalingHandler):
    """The signaling server's view of one connection; it forwards to the session while current."""

    def __init__(self, session: InterviewSession, channel: SignalingChannel) -> None:
        self.session = session
        self.channel = channel

    async def on_offer(self, sdp: str, *, reconnect: bool) -> Answer:
        return await self.session.offer(self, sdp, reconnect=reconnect)

    async def on_candidate(self, candidate: IceCandidate | None) -> None:
        await self.session.candidate(candidate)

    async def on_client_event(self, event: dict[str, Any]) -> None:
        self.session.server_event(json.dumps(event), "client")

    async def on_close(self, reason: str) -> None:
        await self.session.detach(self, reason)


class InterviewSession:
    def __init__(
        self,
        manager: SessionManager,
        tenant_id: UUID,
        interview_id: UUID,
        requested_mode: str,
        *,
        time_limit: float,
        upstream_session: dict[str, Any] | None = None,
    ) -> None:
        self.manager = manager
        self.settings = manager.settings
        self.tenant_id = tenant_id
        self.interview_id = interview_id
        self.requested_mode = requested_mode if requested_mode in ("relay", "proxy") else "auto"
        #: the interview's own upstream session settings (instructions, voice), over the defaults
        self.upstream_session = upstream_session
        self.mode: Literal["relay", "proxy"] | None = None
        self.relay: Relay | None = None
        self.proxy: ProxyCall | None = None
        self.current: ConnectionHandler | None = None
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self._end_task: asyncio.Future[None] | None = None
        self._holds_relay_slot = False
        self._offer_lock = asyncio.Lock()
        self._live: asyncio.Queue[TranscriptEvent] = asyncio.Queue(LIVE_LINES)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._grace: asyncio.TimerHandle | None = None
        self._records: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._spawn(self._pump_live_lines())
        self._spawn(self._write_records())
        self._deadline = asyncio.get_running_loop().call_later(
            time_limit, self._spawn_end, "ended", "time_limit"
        )

    @property
    def _ending(self) -> bool:
        return self._end_task is not None

    @property
    def log_extra(self) -> dict[str, str]:
        return {"interview_id": str(self.interview_id), "tenant_id": str(self.tenant_id)}

    # -- connections ----------------------------------------------------------------------

    async def attach(self, handler: ConnectionHandler) -> None:
        previous, self.current = self.current, handler
        self._cancel_grace()
        if previous is not None:  # the same candidate came back before we noticed it left
            await previous.channel.close("replaced")
        self._record(status="waiting" if self.mode is None else "connecting")

    async def detach(self, handler: ConnectionHandler, reason: str) -> None:
        if handler is not self.current:
            return  # a replaced connection closing: the session has moved on
        self.current = None
        if reason == "bye":
            await self.end("ended", "bye")
        else:
            self._lost(f"signaling_{reason}")

    def _lost(self, reason: str) -> None:
        """The candidate's side went away: end unless they reconnect within the grace period."""
        if self._ending or self._grace is not None:
            return
        log.info("peer lost (%s); waiting for a reconnect", reason, extra=self.log_extra)
        self._grace = asyncio.get_running_loop().call_later(
            self.settings.reconnect_grace, self._spawn_end, "failed", reason
        )

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    # -- negotiation ----------------------------------------------------------------------

    async def offer(self, handler: ConnectionHandler, sdp: str, *, reconnect: bool) -> Answer:
        async with self._offer_lock:
            if self._ending:
                raise SignalingError("interview_ended", "this interview has ended")
            if self.mode is not None:
                if not reconnect:
                    raise SignalingError(
                        "offer_already_made", "this interview is already connected"
                    )
                return Answer(sdp=await self._reconnect(sdp), mode=self.mode)
            self._record(status="connecting")
            answer = await self._first_offer(sdp)
            assert self.mode is not None
            self.manager.stats.relay += self.mode == "relay"
            self.manager.stats.proxy += self.mode == "proxy"
            self._record(
                actual_mode=self.mode,
                upstream_kind=self.manager.upstream.kind,
                upstream_call_id=(self.relay or self.proxy).call_id,  # type: ignore[union-attr]
                **({"status": "active"} if self.mode == "proxy" else {}),
            )
            return Answer(sdp=answer, mode=self.mode)

    async def _first_offer(self, sdp: str) -> str:
        wanted = self._wanted_mode()
        if wanted != "proxy":
            if self._take_relay_slot():
                try:
                    answer = await self._start_relay(sdp)
                except RelayUnavailable as exc:
                    if wanted == "relay":
                        await self.end("failed", "relay_unavailable", notify=False)
                        raise SignalingError("relay_unavailable", str(exc), fatal=True) from None
                    self.manager.stats.fallbacks += 1
                    log.warning("relay unavailable (%s); using proxy", exc, extra=self.log_extra)
                else:
                    self.mode = "relay"
                    self._spawn(self._watch_browser_media())
                    return answer
                finally:
                    if self.mode != "relay":  # fallback, bad offer, cancellation
                        self._release_relay_slot()
            elif wanted == "relay":
                await self.end("failed", "at_capacity", notify=False)
                raise SignalingError("at_capacity", "no relay capacity left", fatal=True)
        answer = await self._start_proxy(sdp)
        self.mode = "proxy"
        return answer

    def _wanted_mode(self) -> str:
        return self.requested_mode if self.requested_mode != "auto" else self.settings.mode

    async def _start_relay(self, sdp: str) -> str:
        self.relay = Relay(
            self.manager.upstream,
            session=self.upstream_session,
            on_server_event=lambda message: self.server_event(message, "relay"),
            on_browser_state=self._browser_state,
            on_upstream_state=self._upstream_state,
            browser_ice_servers=self.settings.ice_servers,
            upstream_ice_servers=self.settings.upstream_ice_servers,
            ice_addresses=self.settings.ice_addresses,
            connect_timeout=self.settings.upstream_connect_timeout,
        )
        try:
            return await self.relay.start(sdp)
        except ValueError as exc:
            self.relay = None
            raise SignalingError("bad_sdp", str(exc)) from None
        except BaseException:
            self.relay = None
            raise

    async def _start_proxy(self, sdp: str) -> str:
        """A proxied call; the upstream judging the offer bad is the browser's error, not ours."""
        proxy = ProxyCall(
            self.manager.upstream,
            session=self.upstream_session,
            on_server_event=lambda message: self.server_event(message, "sideband"),
            on_sideband_closed=lambda reason: self._spawn_end("failed", "upstream_sideband_closed"),
        )
        try:
            answer = await proxy.start(sdp)
        except UpstreamError as exc:
            if exc.status == 400:
                raise SignalingError("bad_sdp", f"the upstream refused the offer: {exc}") from None
            await self.end("failed", f"upstream_{exc.code}", notify=False)
            raise SignalingError("upstream_unavailable", str(exc), fatal=True) from None
        self.proxy = proxy
        return answer

    async def _reconnect(self, sdp: str) -> str:
        self._cancel_grace()
        if self.relay is not None:
            try:
                return await self.relay.reconnect(sdp)
            except ValueError as exc:
                raise SignalingError("bad_sdp", str(exc)) from None
        # Proxy: each upstream call is a new conversation; the old one cannot be resumed.
        assert self.proxy is not None
        await self.proxy.close()
        answer = await self._start_proxy(sdp)
        self._record(upstream_call_id=self.proxy.call_id)
        return answer

    async def candidate(self, candidate: IceCandidate | None) -> None:
        if self.relay is None:
            return  # proxy: the upstream takes no trickle; its checks learn peer-reflexive ones
        if candidate is None:
            await self.relay.add_browser_candidate(None)
            return
        try:
            parsed = parse_candidate(
                candidate.candidate, candidate.sdp_mid, candidate.sdp_mline_index
            )
        except ValueError as exc:
            raise SignalingError("bad_candidate", str(exc)) from None
        await self.relay.add_browser_candidate(parsed)

    # -- state from the peers -------------------------------------------------------------

    def _browser_state(self, state: str) -> None:
        if state == "connected":
            assert self.relay is not None
            self._record(
                status="active",
                connection_state=state,
                connected_at=datetime.now(UTC),
                selected_pair=self.relay.selected_pair(),
            )
            self._spawn(self._send_state("connected"))
        elif state in ("failed", "closed"):
            self._record(connection_state=state)
            self._lost(f"peer_{state}")

    def _upstream_state(self, state: str) -> None:
        if state in ("failed", "closed") and self.mode == "relay":
            self._spawn_end("failed", f"upstream_{state}")

    async def _watch_browser_media(self) -> None:
        """Notice a silent peer within ``peer_timeout`` (aiortc's consent check takes ~30 s)."""
        timeout = self.settings.peer_timeout
        watching_since = time.monotonic()  # a peer that never sends is silent too
        while not self._ending:
            await asyncio.sleep(min(1.0, timeout / 2))
            last = (self.relay.last_browser_media_at if self.relay else None) or watching_since
            if time.monotonic() - last > timeout:
                self._lost("peer_silent")

    # -- events and transcripts -----------------------------------------------------------

    def server_event(self, message: str | bytes, source: Source) -> None:
        """Every Realtime event from any source passes here: live lines and durable entries."""
        try:
            event = parse_event(message)
        except EventError as exc:
            self.manager.stats.bad_events += 1
            log.debug("unreadable %s event: %s", source, exc, extra=self.log_extra)
            return
        line = transcript_event(event)
        if line is None:
            return
        if line.final:
            raw = message.decode() if isinstance(message, bytes) else message
            self.manager.writer.submit(
                TranscriptEntry(
                    tenant_id=self.tenant_id,
                    session_id=self.interview_id,
                    event_id=line.event_id,
                    role=line.role,
                    text=line.text,
                    source=source,
                    event_type=line.event_type,
                    item_id=line.item_id,
                    audio_start_ms=line.audio_start_ms,
                    audio_end_ms=line.audio_end_ms,
                    raw=raw,
                )
            )
        if source != "client":
            with contextlib.suppress(asyncio.QueueFull):
                self._live.put_nowait(line)

    async def _pump_live_lines(self) -> None:
        while True:
            line = await self._live.get()
            if self.current is not None:
                await self.current.channel.send_transcript(
                    role=line.role,
                    text=line.text,
                    final=line.final,
                    item_id=line.item_id,
                    event_id=line.event_id,
                )

    async def _send_state(self, state: str, detail: dict[str, Any] | None = None) -> None:
        if self.current is not None:
            await self.current.channel.send_state(state, detail)

    # -- ending ---------------------------------------------------------------------------

    def _spawn_end(self, status: Literal["ended", "failed"], reason: str) -> None:
        self._spawn(self.end(status, reason))

    async def end(
        self, status: Literal["ended", "failed"], reason: str, *, notify: bool = True
    ) -> None:
        """End the session once: hang up, record the outcome, tell the browser (if ``notify``).

        The work runs in a task of its own and callers wait on it shielded: the signaling
        server cancels a handler call whose socket closed, and that must not leave a session
        half-ended. Refusals during an offer pass ``notify=False``: the signaling server then
        sends the fatal error itself, before it closes the socket.
        """
        if self._end_task is None:
            self._end_task = asyncio.ensure_future(self._finish(status, reason, notify))
        await asyncio.shield(self._end_task)

    async def _finish(self, status: Literal["ended", "failed"], reason: str, notify: bool) -> None:
        self.end_reason = reason
        self._deadline.cancel()
        self._cancel_grace()
        log.info("session %s: %s", status, reason, extra=self.log_extra)
        for call in (self.relay, self.proxy):
            if call is not None:
                await call.close()
        self._release_relay_slot()
        with contextlib.suppress(TimeoutError):  # what was recorded before the end lands first
            async with asyncio.timeout(RECORD_DRAIN_TIMEOUT):
                await self._records.join()
        current, self.current = self.current, None
        if notify and current is not None:
            await current.channel.send_state(status, {"reason": reason})
            await current.channel.close(reason)
        try:
            await interviews.end_session(
                self.manager.db, self.tenant_id, self.interview_id, status=status, reason=reason
            )
        except Exception:  # the database may be away; the session must still end
            log.exception("could not record the end of the session", extra=self.log_extra)
        stats = self.manager.stats.ended
        stats[reason] = stats.get(reason, 0) + 1
        self.manager.sessions.pop(self.interview_id, None)
        for task in list(self._tasks):
            task.cancel()
        self.ended.set()

    # -- helpers --------------------------------------------------------------------------

    def _take_relay_slot(self) -> bool:
        if self.manager.relay_capacity_left() <= 0:
            return False
        self.manager.relayed += 1
        self._holds_relay_slot = True
        return True

    def _release_relay_slot(self) -> None:
        if self._holds_relay_slot:
            self._holds_relay_slot = False
            self.manager.relayed -= 1

    def _record(self, **fields: Any) -> None:
        """Record state on the session row, in order, without making signaling wait for it."""
        if not self._ending:
            self._records.put_nowait(fields)

    async def _write_records(self) -> None:
        """Apply recorded state in order, merging what queued up into one update; a database
        outage must not break the interview (update_session never touches an ended row)."""
        while True:
            fields = await self._records.get()
            merged, taken = dict(fields), 1
            while not self._records.empty():
                merged.update(self._records.get_nowait())
                taken += 1
            try:
                await interviews.update_session(
                    self.manager.db, self.tenant_id, self.interview_id, **merged
                )
            except Exception:
                log.exception("could not record session state %s", merged, extra=self.log_extra)
            finally:
                for _ in range(taken):
                    self._records.task_done()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed", exc_info=task.exception(), extra=self.log_extra)
