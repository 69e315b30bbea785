"""One ``InterviewSession`` per live interview: its lifecycle, its mode, its reconnects, its end.

A session outlives the signaling connections that drive it: a candidate whose network drops
comes back on a new WebSocket with a new peer connection, and in relay mode the AI conversation
carries on. ``gateway.sessions.connection.ConnectionHandler`` is what the signaling server
talks to for one connection.

The session holds one ``Call`` (relay or proxy, from the manager's call factory) and listens
to it as its ``CallListener``. The candidate counts as lost while their signaling socket is
gone *or* their media is (a call's ``peer_lost``); a grace timer then runs, and it is
cancelled as soon as nothing is lost any more (a new socket, media back on the same or a new
peer connection). A healthy candidate is never failed for a loss that has ended. The call is
told both (``candidate_away``, ``candidate_back``): a relay pauses the interviewer while the
candidate is away and has it repeat its last question on their return.

Whatever happens — bye, a lost peer, the time limit, an upstream failure, shutdown — a session
ends exactly once, in a recorded state (``ended`` or ``failed``) with a reason, and its upstream
call is hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from uuid import UUID

from gateway.sessions.closing import INTERVIEW_COMPLETE, ClosingLine
from gateway.sessions.events import (
    EventError,
    SessionClosed,
    TranscriptEvent,
    parse_event,
    session_closed,
    transcript_event,
)
from gateway.sessions.observers import ObserverHub
from gateway.sessions.quality import QualitySampler
from gateway.sessions.quota import ClientEventQuota
from gateway.sessions.reasons import end_reason
from gateway.sessions.recorder import EndStatus, SessionRecorder
from gateway.sessions.transcript import CONVERSATION_LINES, SessionTranscript
from gateway.upstream.call import BadOffer, Call, CallMode, CallUnavailable
from signaling.errors import ERRORS
from signaling.server import Answer, IceCandidate, SignalingChannel, SignalingError
from storage.transcripts import Role, Source

if TYPE_CHECKING:
    from gateway.sessions.connection import ConnectionHandler
    from gateway.sessions.manager import RelayLease, SessionManager

log = logging.getLogger(__name__)

__all__ = ["EndStatus", "InterviewSession"]

#: How long ending waits for its record to land before it lets go (the record goes on).
END_RECORD_WAIT = 2.0

#: What can be lost: the signaling socket, the media.
Loss = Literal["signaling", "media"]


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
        recording: str | None = None,
        earlier: Sequence[tuple[TranscriptEvent, datetime]] = (),
    ) -> None:
        self.manager = manager
        self.settings = manager.settings
        self.tenant_id = tenant_id
        self.interview_id = interview_id
        self.requested_mode = requested_mode if requested_mode in ("relay", "proxy") else "auto"
        #: the interview's own upstream session settings (instructions, voice), over the defaults
        self.upstream_session = upstream_session
        #: what the interview asked of recording ('audio', 'off'; None: the deployment's choice)
        self.recording = recording
        #: every upstream session (call id) the interview had, in order
        self.upstream_session_ids: list[str] = []
        self.after_end: asyncio.Task[None] | None = None
        #: minted once: the browser's (in every welcome) and the relay's browser leg's
        self.ice_servers = manager.ice_servers.for_session(str(interview_id))
        #: given in every welcome; a later socket must present it (with the token) to rejoin,
        #: so a replayed invitation cannot take the live interview over
        self.reconnect_secret = secrets.token_urlsafe(32)
        #: the connection to the AI interviewer, once the first offer is answered
        self.call: Call | None = None
        self.current: ConnectionHandler | None = None
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self._end_task: asyncio.Future[None] | None = None
        self._lease: RelayLease | None = None
        self._offer_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._losses: set[Loss] = set()
        self._losses_changed = asyncio.Event()
        self._integrity_logged: set[str] = set()
        #: the row's connected_at is when the candidate first connected, never a reconnect
        self._connected_recorded = False
        #: what was said: stored, shown live, and kept for a call that carries it over
        self.transcript = SessionTranscript(manager.writer.submit, tenant_id, interview_id)
        #: what the browser's forwarded events may still take, for the interview's whole life
        self._client_quota = ClientEventQuota(
            self.settings.client_event_limit, self.settings.client_event_bytes
        )
        #: who watches, read-only: copies of the live lines and states, never the candidate
        self.observers = ObserverHub(
            queue_size=self.settings.observer_queue,
            max_observers=self.settings.max_observers,
            log_extra=self.log_extra,
        )
        self._grace: asyncio.TimerHandle | None = None
        #: the call was told the candidate is away (and is told once they are back)
        self._away = False
        #: the call's network and turn latencies, sampled while it runs
        self.quality = QualitySampler(
            manager.db,
            tenant_id,
            interview_id,
            interval=self.settings.quality_interval,
            turns=manager.stats.turn_latency,
            log_extra=self.log_extra,
        )
        #: the final lines shown so far, with when: a rejoining socket is told them again;
        #: it starts with what the database holds of an earlier process's interview (a
        #: crashed gateway restarted, a failed session started again), so the room never
        #: rejoins to an empty transcript
        self._said: deque[tuple[TranscriptEvent, datetime]] = deque(
            earlier, maxlen=CONVERSATION_LINES
        )
        self.transcript.restore([(line.role, line.text) for line, _ in earlier])
        self._closing_line = ClosingLine(self.settings.end_phrase)
        #: set once the interviewer said its closing line: the end, after the linger
        self._closing: asyncio.TimerHandle | None = None
        self.recorder = SessionRecorder(
            manager.state, tenant_id, interview_id, gateway_id=manager.gateway_id
        )
        self._spawn(self._pump_live_lines())
        self._deadline = asyncio.get_running_loop().call_later(
            time_limit, self._spawn_end, "ended", "time_limit"
        )

    @property
    def mode(self) -> CallMode | None:
        return self.call.mode if self.call is not None else None

    @property
    def losses(self) -> frozenset[Loss]:
        """What of the candidate is lost right now (the grace timer runs while any is)."""
        return frozenset(self._losses)

    async def losses_reach(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition`` holds, checked at every change of ``losses``."""
        while not condition():
            self._losses_changed.clear()
            await self._losses_changed.wait()

    @property
    def _ending(self) -> bool:
        return self._end_task is not None

    @property
    def log_extra(self) -> dict[str, str]:
        return {"interview_id": str(self.interview_id), "tenant_id": str(self.tenant_id)}

    # -- connections ----------------------------------------------------------------------

    def check_rejoin(self, presented: str | None) -> None:
        """A socket joining this live session must be the same candidate: it presents the
        secret an earlier welcome gave (a replayed invitation alone is refused)."""
        if presented is None or not secrets.compare_digest(presented, self.reconnect_secret):
            what = "a wrong reconnect secret" if presented is not None else "no reconnect secret"
            raise SignalingError(
                "interview_in_progress",
                f"this interview is live on another page; {what} was presented to rejoin it",
            )

    async def attach(self, handler: ConnectionHandler) -> None:
        previous, self.current = self.current, handler
        self._found("signaling")
        if previous is not None:  # the same candidate came back before we noticed it left
            await previous.channel.close("replaced")
        self.recorder.record(status="waiting" if self.call is None else "connecting")

    async def detach(self, handler: ConnectionHandler, reason: str) -> None:
        if handler is not self.current:
            return  # a replaced connection closing: the session has moved on
        self.current = None
        if reason == "bye":
            await self.end("ended", "bye")
        else:
            self._lost("signaling", f"signaling_{reason}")

    def _lost(self, what: Loss, reason: str) -> None:
        """The candidate's side went away: end unless it is back within the grace period."""
        if self._ending:
            return
        self._losses.add(what)
        self._losses_changed.set()
        if self._grace is None:
            log.info("peer lost (%s); waiting for a reconnect", reason, extra=self.log_extra)
            self._grace = asyncio.get_running_loop().call_later(
                self.settings.reconnect_grace, self._spawn_end, "failed", reason
            )
            if self.call is not None and not self._away:
                self._away = True
                self.call.candidate_away()  # no question asked to nobody

    def _found(self, what: Loss) -> None:
        """Something lost is back; once nothing is lost, the grace period is over."""
        self._losses.discard(what)
        self._losses_changed.set()
        if not self._losses and self._grace is not None:
            log.info("peer back; the session carries on", extra=self.log_extra)
            self._grace.cancel()
            self._grace = None
            if self._away and self.call is not None:
                self._away = False
                self.call.candidate_back()  # the interviewer asks its last question again

    # -- negotiation ----------------------------------------------------------------------

    async def offer(self, sdp: str) -> Answer:
        """The first offer starts the call; every later one (a new socket, which proved with the
        reconnect secret that it is this candidate's, or a restart on the same socket) gives
        the call a new browser peer connection."""
        async with self._offer_lock:
            if self._ending:
                raise SignalingError("interview_ended", "this interview has ended")
            if self.call is not None:
                answer = await self._upstream_answer(self.call.reconnect(sdp))
                self.recorder.record(upstream_call_id=self.call.call_id)
                self._note_upstream_session(self.call.call_id)
                return Answer(sdp=answer, mode=self.call.mode)
            self.recorder.record(status="connecting")
            call, answer = await self._first_offer(sdp)
            self.call = call
            self._note_upstream_session(call.call_id)
            self._spawn(self.quality.run(call))
            self.manager.stats.relay += call.mode == "relay"
            self.manager.stats.proxy += call.mode == "proxy"
            self.recorder.record(
                actual_mode=call.mode,
                upstream_kind=self.manager.calls.upstream_kind,
                upstream_call_id=call.call_id,
                # proxy mode sees no media: the candidate is connected once the call answered
                **({"status": "active", **self._first_connected()} if call.mode == "proxy" else {}),
            )
            return Answer(sdp=answer, mode=call.mode)

    def _note_upstream_session(self, call_id: str | None) -> None:
        """Keep each upstream session the interview had, in order, for what follows its end."""
        if call_id is not None and call_id not in self.upstream_session_ids:
            self.upstream_session_ids.append(call_id)

    async def _first_offer(self, sdp: str) -> tuple[Call, str]:
        """Relay when wanted and possible, else proxy; the lease goes with a relay only. The
        call is given what the database held of the interview (a restarted gateway's, a failed
        session's): the interviewer goes on where it was."""
        earlier = self.conversation()
        wanted = self.requested_mode if self.requested_mode != "auto" else self.settings.mode
        if wanted != "proxy":
            lease = self.manager.lease_relay(self.tenant_id)
            if lease is None and wanted == "relay":
                if self.manager.tenant_relay_share_left(self.tenant_id) == 0:
                    await self._refuse(
                        "relay_unavailable", "relay_unavailable", "the tenant's relay share is used"
                    )
                await self._refuse("at_capacity", "at_capacity", "no relay capacity left")
            if lease is not None:
                relay = self._call("relay")
                try:
                    answer = await self._answering(relay.start(sdp, carry_over=earlier))
                except CallUnavailable as exc:
                    lease.release()
                    if wanted == "relay":
                        await self._refuse("relay_unavailable", "relay_unavailable", str(exc))
                    self.manager.stats.fallbacks += 1
                    log.warning("relay unavailable (%s); using proxy", exc, extra=self.log_extra)
                except BaseException:
                    lease.release()
                    raise
                else:
                    self._lease = lease
                    return relay, answer
        proxy = self._call("proxy")
        return proxy, await self._upstream_answer(proxy.start(sdp, carry_over=earlier))

    def _call(self, mode: CallMode) -> Call:
        return self.manager.calls.create(
            mode,
            self,
            self.upstream_session,
            tenant_id=self.tenant_id,
            interview_id=self.interview_id,
            browser_ice_servers=self.ice_servers.gateway,
            recording=self.recording,
        )

    async def _answering(self, answer: Awaitable[str]) -> str:
        """A call's answer; a refused offer is the browser's (non-fatal) ``bad_sdp``."""
        try:
            return await answer
        except BadOffer as exc:
            raise SignalingError("bad_sdp", str(exc)) from None

    async def _upstream_answer(self, answer: Awaitable[str]) -> str:
        """A call's answer where no fallback is left: an unreachable upstream ends the session."""
        try:
            return await self._answering(answer)
        except CallUnavailable as exc:
            await self._refuse(exc.reason, "upstream_unavailable", str(exc))

    async def _refuse(self, reason: str, code: str, detail: str) -> NoReturn:
        """End the session with ``reason`` and send the browser the fatal error ``code``. The
        browser hears the code's fixed meaning only: ``detail`` may quote the upstream, whose
        text is no browser's business (it has been seen to quote the API key), so it is logged."""
        log.warning("refused: %s (%s)", reason, detail, extra=self.log_extra)
        await self.end("failed", reason, notify=False)
        raise SignalingError(code, ERRORS[code].meaning, fatal=True)

    async def candidate(self, candidate: IceCandidate | None) -> None:
        if self.call is None:
            return
        try:
            await self.call.add_candidate(candidate)
        except BadOffer as exc:
            raise SignalingError("bad_candidate", str(exc)) from None

    # -- what the call tells (CallListener) -----------------------------------------------

    def _first_connected(self) -> dict[str, datetime]:
        """``connected_at`` to record, the first time the candidate is connected only."""
        if self._connected_recorded:
            return {}
        self._connected_recorded = True
        return {"connected_at": datetime.now(UTC)}

    def peer_connected(self, selected_pair: str | None) -> None:
        self.recorder.record(
            status="active",
            connection_state="connected",
            selected_pair=selected_pair,
            **self._first_connected(),
        )
        self._found("media")
        self._spawn(self._send_state("connected"))

    def peer_lost(self, reason: str) -> None:
        if reason in ("peer_failed", "peer_closed"):
            self.recorder.record(connection_state=reason.removeprefix("peer_"))
        self._lost("media", reason)

    def peer_back(self) -> None:
        self._found("media")

    def upstream_failed(self, reason: str) -> None:
        self._spawn_end("failed", reason)

    def integrity_event(self, kind: str, detail: str) -> None:
        """The candidate's client tried to steer the interviewer: counted, kept on the record,
        and, if the deployment says so, the end of a tampered interview."""
        self.manager.stats.integrity[kind] = self.manager.stats.integrity.get(kind, 0) + 1
        if kind not in self._integrity_logged:
            self._integrity_logged.add(kind)
            log.warning("integrity: %s (%s)", kind, detail, extra=self.log_extra)
        self.recorder.note(kind, detail)
        if kind == "session_tampered" and self.settings.on_session_tamper == "end":
            self._spawn_end("failed", "integrity_violation")

    def conversation(self) -> list[tuple[Role, str]]:
        return self.transcript.conversation()

    def server_event(self, message: str | bytes, source: Source) -> None:
        """Every upstream event (either contract) from the relay or the sideband passes here:
        live lines, durable entries, and GPT-Live's close."""
        try:
            event = parse_event(message)
        except EventError as exc:
            self.manager.stats.bad_events += 1
            log.debug("unreadable %s event: %s", source, exc, extra=self.log_extra)
            return
        raw = message.decode() if isinstance(message, bytes) else message
        self._event(event, raw, source)

    def client_event(self, event: dict[str, Any]) -> None:
        """An event the browser forwarded (an object with a string ``type``, as signaling
        checked): within the interview's quota it is only stored, as the least trusted line;
        beyond, it is refused whole with ``client_event_quota``, counted and recorded."""
        raw = json.dumps(event)
        line = transcript_event(event)
        exceeded = self._client_quota.charge(len(raw) if line is not None and line.final else 0)
        if exceeded is not None:
            self.integrity_event("client_event_quota", exceeded)
            quota = self._client_quota
            limit = (
                f"{quota.max_events} events" if exceeded == "events" else f"{quota.max_bytes} bytes"
            )
            raise SignalingError(
                "client_event_quota", f"this interview's forwarded events reached {limit}"
            )
        self._event(event, raw, "client")

    def _event(self, event: dict[str, Any], raw: str, source: Source) -> None:
        closed = session_closed(event)
        if closed is not None:
            if source != "client":
                self._upstream_closed(closed)
            return
        line = transcript_event(event)
        if line is not None:
            self.transcript.take(line, source, raw)

    def _upstream_closed(self, closed: SessionClosed) -> None:
        """GPT-Live closed the session. In proxy mode a close for the primary peer is the
        candidate's browser gone, who may come back on a new call; otherwise it is the end."""
        if self._ending:
            return
        log.info("upstream closed the session: %s", closed.upstream_reason, extra=self.log_extra)
        if closed.candidate_loss is not None and self.mode == "proxy":
            self.peer_lost(closed.candidate_loss)
        else:
            self._spawn_end(closed.status, closed.reason)

    # -- to the browser -------------------------------------------------------------------

    async def tell_so_far(self, channel: SignalingChannel) -> None:
        """Send ``channel`` every final line shown so far (the client drops those it has)."""
        for line, at in list(self._said):
            await self._show(channel, line, at)

    async def _show(self, channel: SignalingChannel, line: TranscriptEvent, at: datetime) -> None:
        await channel.send_transcript(
            role=line.role,
            text=line.text,
            final=line.final,
            item_id=line.item_id,
            event_id=line.event_id,
            at=at,
        )

    async def _pump_live_lines(self) -> None:
        while True:
            line = await self.transcript.live.get()
            self.observers.line(line)
            at = datetime.now(UTC)
            if line.final:
                self._said.append((line, at))
            if line.role == "interviewer" and line.final and self._closing is None:
                if self._closing_line.said_in(line.text):
                    log.info("the interviewer closed the interview", extra=self.log_extra)
                    self._closing = asyncio.get_running_loop().call_later(
                        self.settings.end_linger, self._spawn_end, "ended", INTERVIEW_COMPLETE
                    )
            if self.current is not None:
                await self._show(self.current.channel, line, at)

    async def _send_state(self, state: str, detail: dict[str, Any] | None = None) -> None:
        self.observers.state(state, detail)
        if self.current is not None:
            await self.current.channel.send_state(state, detail)

    # -- ending ---------------------------------------------------------------------------

    def _spawn_end(self, status: EndStatus, reason: str) -> None:
        self._spawn(self.end(status, reason))

    async def end(self, status: EndStatus, reason: str, *, notify: bool = True) -> None:
        """End the session once: hang up, record the outcome, tell the browser (if ``notify``).

        The work runs in a task of its own and callers wait on it shielded: the signaling
        server cancels a handler call whose socket closed, and that must not leave a session
        half-ended. Refusals during an offer pass ``notify=False``: the signaling server then
        sends the fatal error itself, before it closes the socket.
        """
        if self._end_task is None:
            self._end_task = asyncio.ensure_future(self._finish(status, reason, notify))
        await asyncio.shield(self._end_task)

    async def _finish(self, status: EndStatus, reason: str, notify: bool) -> None:
        if end_reason(reason) != reason:
            log.error("an unlisted end reason, recorded as unknown", extra=self.log_extra)
            reason = "unknown"
        self.end_reason = reason
        self._deadline.cancel()
        if self._closing is not None:
            self._closing.cancel()
        self.transcript.close()
        if self._grace is not None:
            self._grace.cancel()
        log.info("session %s: %s", status, reason, extra=self.log_extra)
        try:
            if self.call is not None:
                await self.call.close()
        finally:
            if self._lease is not None:
                self._lease.release()
        #: the upstream's own recording, fetched in the background (never waited for here)
        self.after_end = self.manager.calls.ended(
            self.tenant_id, self.interview_id, self.upstream_session_ids, self.recording
        )
        # The row says so before the browser hears it (a client may ask the API right away),
        # unless the database is away: then the record goes on after the session is gone.
        record = asyncio.ensure_future(self.recorder.finish(status, reason))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(record), END_RECORD_WAIT)
        current, self.current = self.current, None
        self.observers.end(status, reason)
        if notify and current is not None:
            await current.channel.send_state(status, {"reason": reason})
            await current.channel.close(reason)
        self.manager.session_ended(self, record)
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        self.ended.set()

    # -- helpers --------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed", exc_info=task.exception(), extra=self.log_extra)
