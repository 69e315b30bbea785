"""Observers: interviewers and observers who watch a live interview, read-only, over the same
signaling endpoint as the candidate.

Each session has one ``ObserverHub``. The session hands it every live transcript line as the
candidate's client gets it, and every state change; the hub copies them to each observer's own
bounded queue without ever waiting, so however many observers there are and however slow one
is, the candidate is never delayed: an observer whose queue is full has stopped reading and is
dropped at once (its socket aborted, reason ``observer_lagging``). A newcomer first gets the
interview's last state and the final lines so far (the hub keeps them, as they went out), then
everything live: the snapshot and the registration happen in one step of the event loop, so no
line is missed or repeated.

An observer sends nothing into the interview: its events are refused (``observer_read_only``);
its offer, in a relayed interview, gets a receive-only peer connection that carries both voices
as forwarded packets (``media.listen``, reached through the call's ``listen_in``: this room
holds no aiortc), and anywhere else ``listen_unavailable``. A listen-in peer that stops
answering (its connection failed) is hung up and the observer told ``listen_lost``, through its
queue like everything else: the observer may offer again. It never counts as the candidate
(the session's losses and grace timer do not know it exists). Each join and leave is an audit
row (``storage.observers``): the join is written before the observer is admitted (no database,
no watching), the leave after it went, retried for a while if the database is away
(``admission.ObserverAdmission``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from gateway.sessions.events import TranscriptEvent
from gateway.upstream.call import BadOffer
from signaling.errors import SignalingError
from signaling.server import Answer, IceCandidate, SignalingChannel

log = logging.getLogger(__name__)

#: Final lines a hub keeps for observers who join late; beyond this the oldest are forgotten
#: (an interview is bounded by its time limit, so this is rarely reached).
HISTORY_LINES = 2000
#: Why an observer was dropped for not reading (its audit row's reason).
LAGGING = "observer_lagging"
#: An observer's close reason when the interview it watched ended.
WATCHED_ENDED = "interview_ended"
#: The error an observer is sent when its listen-in peer stopped answering and was hung up.
LISTEN_LOST = "listen_lost"


@dataclass(frozen=True, slots=True)
class _State:
    state: str
    detail: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class _End:
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Error:
    code: str
    message: str


_Item = TranscriptEvent | _State | _End | _Error


class Observer:
    """One watcher: its channel, its bounded queue, and the task that empties it in order."""

    def __init__(
        self,
        hub: ObserverHub,
        channel: SignalingChannel,
        *,
        observer_id: UUID,
        subject: str | None,
        role: str,
        backlog: list[_Item],
    ) -> None:
        self.id = observer_id
        self.subject, self.role = subject, role
        self.channel = channel
        self._hub = hub
        self._backlog = backlog
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(hub.queue_size)
        # Started now, it first runs after the admission returns and the welcome is queued:
        # nothing the observer is sent can go ahead of its welcome.
        self._task = asyncio.ensure_future(self._pump())
        self._task.add_done_callback(self._pumped)

    def put(self, item: _Item) -> None:
        """Queue ``item`` without waiting; a full queue means the observer stopped reading."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.drop(LAGGING)

    def drop(self, reason: str) -> None:
        """Let go of this observer now: its sends may be stuck on a full socket, so the socket
        is aborted rather than closed politely."""
        self._hub.remove(self)
        self._task.cancel()
        log.info("observer %s dropped: %s", self.id, reason, extra=self._hub.log_extra)
        self.channel.abort(reason)

    def stop(self) -> None:
        self._task.cancel()

    def _pumped(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "observer %s: sending failed",
                self.id,
                exc_info=task.exception(),
                extra=self._hub.log_extra,
            )

    async def _pump(self) -> None:
        for item in self._backlog:
            await self._send(item)
        self._backlog = []
        while True:
            item = await self._queue.get()
            await self._send(item)
            if isinstance(item, _End):
                await self.channel.close(WATCHED_ENDED)
                return

    async def _send(self, item: _Item) -> None:
        if isinstance(item, TranscriptEvent):
            await self.channel.send_transcript(
                role=item.role,
                text=item.text,
                final=item.final,
                item_id=item.item_id,
                event_id=item.event_id,
            )
        elif isinstance(item, _State):
            await self.channel.send_state(item.state, item.detail)
        elif isinstance(item, _Error):
            await self.channel.send_error(item.code, item.message)
        else:
            await self.channel.send_state(item.state, {"reason": item.reason})


class ObserverHub:
    """One interview's observers, and what a newcomer is owed (the last state, the lines so
    far). ``queue_size`` bounds each observer's queue; ``max_observers`` their number."""

    def __init__(
        self, *, queue_size: int, max_observers: int, log_extra: Mapping[str, str]
    ) -> None:
        self.queue_size = queue_size
        self.max_observers = max_observers
        self.log_extra = dict(log_extra)
        self._observers: dict[UUID, Observer] = {}
        self._history: deque[TranscriptEvent] = deque(maxlen=HISTORY_LINES)
        self._state: _State | None = None
        self._ended: _End | None = None

    def __len__(self) -> int:
        return len(self._observers)

    @property
    def ended(self) -> bool:
        return self._ended is not None

    def check_room(self) -> None:
        """Refuse a newcomer the interview has no room (or no time) for."""
        if self._ended is not None:
            raise SignalingError("interview_ended", "this interview has ended")
        if len(self._observers) >= self.max_observers:
            raise SignalingError(
                "at_capacity", f"this interview has its {self.max_observers} observers"
            )

    def add(
        self,
        channel: SignalingChannel,
        *,
        subject: str | None,
        role: str,
        observer_id: UUID | None = None,
    ) -> Observer:
        """A new observer: the last state and the lines so far, then everything live."""
        self.check_room()
        backlog: list[_Item] = [*([self._state] if self._state else []), *self._history]
        observer = Observer(
            self,
            channel,
            observer_id=observer_id or uuid.uuid4(),
            subject=subject,
            role=role,
            backlog=backlog,
        )
        self._observers[observer.id] = observer
        return observer

    def remove(self, observer: Observer) -> None:
        self._observers.pop(observer.id, None)

    # -- what the session tells ---------------------------------------------------------------

    def line(self, line: TranscriptEvent) -> None:
        """A live transcript line, as it goes to the candidate."""
        if line.final:
            self._history.append(line)
        self._publish(line)

    def state(self, state: str, detail: dict[str, Any] | None = None) -> None:
        self._state = _State(state, detail)
        self._publish(self._state)

    def end(self, status: str, reason: str) -> None:
        """The interview is over: each observer hears how, then its socket closes."""
        self._ended = _End(status, reason)
        self._publish(self._ended)

    def _publish(self, item: _Item) -> None:
        for observer in list(self._observers.values()):
            observer.put(item)


class ListenPeer(Protocol):
    """An observer's receive-only peer connection (``media.listen.ListenLeg``)."""

    async def add_candidate(self, candidate: IceCandidate | None) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class ListensIn(Protocol):
    """A call that can give an observer both voices (the relay); ``BadOffer`` for an offer
    it cannot take; ``on_lost`` when the peer stops answering."""

    async def listen_in(
        self, offer_sdp: str, on_lost: Callable[[], None] | None = None
    ) -> tuple[ListenPeer, str]: ...


class ObserverHandler:
    """The signaling server's view of one observer's connection: it reads, may listen in, and
    refuses every attempt to send anything into the interview."""

    def __init__(
        self,
        hub: ObserverHub,
        observer: Observer,
        ice_servers: tuple[dict[str, Any], ...],
        on_leave: Callable[[Observer, str], None],
        call: Callable[[], object | None],
    ) -> None:
        self.hub = hub
        self.observer = observer
        self.ice_servers = ice_servers
        self._on_leave = on_leave
        self._call = call
        self.listen: ListenPeer | None = None
        self._watching: asyncio.Future[None] | None = None

    async def on_offer(self, sdp: str, *, reconnect: bool) -> Answer:
        """A listen-in offer: a new receive-only peer (a reconnect's replaces the last)."""
        call = self._call()
        if not isinstance(call, ListensIn):
            raise SignalingError(
                "listen_unavailable",
                "listen-in audio needs a relayed interview, once it is connected",
            )
        await self._hang_up()
        lost = asyncio.Event()
        try:
            self.listen, answer = await call.listen_in(sdp, on_lost=lost.set)
        except BadOffer as exc:
            raise SignalingError("bad_sdp", str(exc)) from None
        self._watching = asyncio.ensure_future(self._drop_when_lost(self.listen, lost))
        return Answer(sdp=answer, mode="relay")

    async def _drop_when_lost(self, listen: ListenPeer, lost: asyncio.Event) -> None:
        """Hang up ``listen`` once it stopped answering, and tell the observer (who may still
        be reading its socket, and may offer again)."""
        await lost.wait()
        if self.listen is not listen:
            return
        log.info(
            "observer %s: listen-in dropped: %s",
            self.observer.id,
            LISTEN_LOST,
            extra=self.hub.log_extra,
        )
        await self._hang_up()
        self.observer.put(_Error(LISTEN_LOST, "the listen-in peer connection stopped answering"))

    async def on_candidate(self, candidate: IceCandidate | None) -> None:
        if self.listen is None:
            return
        try:
            await self.listen.add_candidate(candidate)
        except BadOffer as exc:
            raise SignalingError("bad_candidate", str(exc)) from None

    async def on_client_event(self, event: dict[str, Any]) -> None:
        raise SignalingError("observer_read_only", "an observer cannot send events")

    async def on_close(self, reason: str) -> None:
        self.hub.remove(self.observer)
        self.observer.stop()
        await self._hang_up()
        self._on_leave(self.observer, reason)

    async def _hang_up(self) -> None:
        listen, self.listen = self.listen, None
        watching, self._watching = self._watching, None
        if watching is not None and watching is not asyncio.current_task():
            watching.cancel()
        if listen is not None:
            await listen.close()
