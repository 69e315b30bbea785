"""The aiohttp WebSocket endpoint: a thin asyncio shell around ``ServerProtocol``.

Per connection, three small tasks share one protocol: the reader feeds frames in, the
dispatcher calls the gateway's handler one call at a time (so candidates trickled while
``on_offer`` runs reach the handler after it), and timers fire the hello deadline and
keepalive pings. Every task drains the protocol's actions under one lock, so messages leave in
the order the protocol produced them. Whatever ends the connection, ``on_close`` runs once.

Each connection logs through its own adapter, so every line carries the ``interview_id`` from
the path and, once the token is verified, its ``tenant_id``; a failure that must not stop the
connection from ending is logged, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import datetime
from typing import Any, Protocol

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from signaling import messages
from signaling.candidates import DEFAULT_MAX_REMOTE_CANDIDATES, CandidatePolicy
from signaling.errors import SignalingError
from signaling.messages import DEFAULT_MAX_MESSAGE_SIZE
from signaling.protocol import CloseConnection, SendMessage
from signaling.sdp import IceCandidate
from signaling.session import (
    Answer,
    Authenticate,
    DeliverCandidate,
    DeliverClientEvent,
    DeliverOffer,
    HandlerCall,
    ServerProtocol,
)
from signaling.tokens import TokenClaims, TokenVerifier

__all__ = [
    "SIGNAL_PATH",
    "Answer",
    "HandlerFactory",
    "IceCandidate",
    "SignalingChannel",
    "SignalingEndpoint",
    "SignalingError",
    "SignalingHandler",
    "signaling_handler",
]

log = logging.getLogger(__name__)

#: Where the gateway serves signaling, on the same port as its HTTP API.
SIGNAL_PATH = "/v1/interviews/{interview_id}/signal"

#: aiohttp itself drops (close 1009, no error message) frames beyond this multiple of the limit;
#: frames between the limit and this get a ``too_large`` error and the socket lives on.
_HARD_LIMIT_FACTOR = 4
#: How long closing waits for the client's close frame.
_CLOSE_TIMEOUT = 5.0
#: How long a shutdown waits for handlers' on_close before aiohttp cancels what is left.
_SHUTDOWN_GRACE = 5.0
#: How long a closing connection waits for its queued handler calls.
_DRAIN_TIMEOUT = 2.0


class SignalingHandler(Protocol):
    """The gateway's side of one admitted connection. Calls arrive one at a time, in the
    client's order. Raising ``SignalingError`` sends that error (fatal or not, as it says);
    raising anything else is an ``internal`` error that closes this connection only.
    A handler may also expose ``session_id: str | None`` and ``ice_servers`` (``RTCIceServer``
    dictionaries for the browser, e.g. with short-lived TURN credentials); the welcome message
    carries them, and ``reconnect_secret`` (what a later socket presents in ``hello`` to rejoin
    the same session: ``SignalingChannel.reconnect_secret``)."""

    async def on_offer(self, sdp: str, *, reconnect: bool) -> Answer: ...

    async def on_candidate(self, candidate: IceCandidate | None) -> None: ...

    async def on_client_event(self, event: dict[str, Any]) -> None: ...

    async def on_close(self, reason: str) -> None: ...


class SignalingChannel:
    """What the gateway holds to talk to the browser. Safe to call from any task of the loop;
    after the connection closed, sends are silently dropped."""

    def __init__(self, connection: _Connection, reconnect_secret: str | None = None) -> None:
        self._connection = connection
        #: the reconnect secret the client's ``hello`` presented (None: it presented none)
        self.reconnect_secret = reconnect_secret

    @property
    def closed(self) -> bool:
        return self._connection.protocol.closed

    async def send_transcript(
        self,
        *,
        role: str,
        text: str,
        final: bool,
        item_id: str | None = None,
        event_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        self._connection.protocol.send_transcript(
            role=role, text=text, final=final, item_id=item_id, event_id=event_id, at=at
        )
        await self._connection.flush()

    async def send_state(self, state: str, detail: dict[str, Any] | None = None) -> None:
        self._connection.protocol.send_state(state, detail)
        await self._connection.flush()

    async def send_error(self, code: str, message: str, *, fatal: bool = False) -> None:
        self._connection.protocol.report(SignalingError(code, message, fatal=fatal))
        await self._connection.flush()

    async def close(self, reason: str = "bye") -> None:
        """Send ``bye`` and close the socket; the handler's ``on_close(reason)`` follows."""
        self._connection.protocol.close(reason)
        await self._connection.flush()

    def abort(self, reason: str) -> None:
        """Drop the connection at once, without a goodbye: for a client that stopped reading,
        whose sends would wait forever. The handler's ``on_close(reason)`` follows."""
        self._connection.protocol.connection_lost(reason)
        self._connection.abort()


HandlerFactory = Callable[[TokenClaims, SignalingChannel], Awaitable[SignalingHandler]]


def signaling_handler(
    factory: HandlerFactory,
    verifier: TokenVerifier,
    *,
    hello_timeout: float = 5.0,
    ping_interval: float = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    allow_remote_candidates: Iterable[str] = (),
    max_remote_candidates: int = DEFAULT_MAX_REMOTE_CANDIDATES,
) -> SignalingEndpoint:
    """The WebSocket endpoint; ``signaling_handler(...).mount(app)`` serves it at
    ``SIGNAL_PATH`` and says bye to every browser when the application shuts down.
    (``endpoint.handle`` is the bare aiohttp request handler.)

    Remote ICE candidates reach the handler only when ``signaling.candidates`` lets them:
    ``allow_remote_candidates`` (CIDRs) exempts networks from its denied classes, and one offer
    brings at most ``max_remote_candidates``. A bad CIDR is a ``ValueError`` here, at start."""
    return SignalingEndpoint(
        factory,
        verifier,
        hello_timeout=hello_timeout,
        ping_interval=ping_interval,
        max_message_size=max_message_size,
        candidate_policy=CandidatePolicy(
            allow_remote_candidates, max_candidates=max_remote_candidates
        ),
    )


class SignalingEndpoint:
    """An aiohttp request handler that also knows its live connections, so that a shutdown can
    close them with ``bye`` and 1001 (going away) instead of aiohttp cancelling them mid-call."""

    def __init__(
        self,
        factory: HandlerFactory,
        verifier: TokenVerifier,
        *,
        hello_timeout: float,
        ping_interval: float,
        max_message_size: int,
        candidate_policy: CandidatePolicy,
    ) -> None:
        self._factory = factory
        self._verifier = verifier
        self._hello_timeout = hello_timeout
        self._ping_interval = ping_interval
        self._max_message_size = max_message_size
        self._candidate_policy = candidate_policy
        self._connections: set[_Connection] = set()

    def mount(self, app: web.Application, path: str = SIGNAL_PATH) -> None:
        """Route ``GET path`` here and close the connections on ``app.on_shutdown``."""
        app.router.add_get(path, self.handle)
        app.on_shutdown.append(self.shutdown)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            max_msg_size=self._max_message_size * _HARD_LIMIT_FACTOR, timeout=_CLOSE_TIMEOUT
        )
        await ws.prepare(request)
        protocol = ServerProtocol(
            request.match_info["interview_id"],
            self._verifier,
            ping_interval=self._ping_interval,
            max_message_size=self._max_message_size,
            candidate_policy=self._candidate_policy,
        )
        connection = _Connection(
            ws, protocol, self._factory, self._hello_timeout, self._ping_interval
        )
        connection.transport = request.transport
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
        return ws

    async def shutdown(self, app: web.Application | None = None) -> None:
        """Say bye (reason ``shutdown``) to every connection and wait, a bounded time, for
        their handlers' ``on_close``. Fits ``app.on_shutdown``."""
        connections = list(self._connections)
        for connection in connections:
            connection.protocol.shutdown()
        await asyncio.gather(*(c.settle("saying bye at shutdown", c.flush()) for c in connections))
        try:
            async with asyncio.timeout(_SHUTDOWN_GRACE):
                await asyncio.gather(*(c.finished.wait() for c in connections))
        except TimeoutError:
            for connection in connections:
                if not connection.finished.is_set():
                    connection.log.warning(
                        "signaling %s: still closing %.0f s after shutdown; aiohttp cancels it",
                        connection.label,
                        _SHUTDOWN_GRACE,
                    )


class _Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        protocol: ServerProtocol,
        factory: HandlerFactory,
        hello_timeout: float,
        ping_interval: float,
    ) -> None:
        self.protocol = protocol
        self._ws = ws
        self._factory = factory
        self._hello_timeout = hello_timeout
        self._ping_interval = ping_interval
        self._lock = asyncio.Lock()
        self._calls: asyncio.Queue[HandlerCall] = asyncio.Queue()
        self._handler: SignalingHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        connection_id = secrets.token_hex(4)
        #: How the connection's log lines name it for a reader of the human-readable format.
        self.label = f"{connection_id} interview={protocol.interview_id[:64]!r}"
        #: The fields every log line of this connection carries; tenant_id joins once known.
        self._log_fields: MutableMapping[str, object] = {
            "interview_id": protocol.interview_id[:64],
            "signaling_connection": connection_id,
        }
        self.log = logging.LoggerAdapter(log, self._log_fields)
        #: Set once the connection is over and ``on_close`` has returned.
        self.finished = asyncio.Event()
        #: The TCP transport under the socket, for ``abort``.
        self.transport: asyncio.Transport | None = None

    def abort(self) -> None:
        """Close the TCP connection now: a send waiting on a full buffer fails, the reader sees
        the socket gone, and the connection ends as usual."""
        if self.transport is not None:
            self.transport.abort()

    async def run(self) -> None:
        self._spawn(self._hello_deadline())
        self._spawn(self._dispatch())
        try:
            await self._read()
        except asyncio.CancelledError:
            self.protocol.shutdown()
            await self.settle("saying bye on cancellation", asyncio.wait_for(self.flush(), 1.0))
            raise
        except Exception:
            self.log.exception("signaling %s: reader failed", self.label)
            self.protocol.report(SignalingError("internal", "the server failed"))
            await self.settle("reporting the reader's failure", self.flush())
        finally:
            await self._finish()

    async def _read(self) -> None:
        while not self.protocol.closed:
            msg = await self._ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                self.protocol.receive_frame(msg.data)
            elif msg.type is WSMsgType.ERROR and _too_big(msg.data):
                self.protocol.connection_lost("too_large")
            else:
                self.protocol.connection_lost()
            await self.flush()

    async def _finish(self) -> None:
        # What the client sent before it left (a bye right behind its last events) is
        # delivered first, within a bound: forwarded events are transcript data.
        try:
            async with asyncio.timeout(_DRAIN_TIMEOUT):
                await self._calls.join()
        except TimeoutError:
            self.log.warning(
                "signaling %s: handler calls unfinished after %.0f s are cancelled "
                "(%d still queued)",
                self.label,
                _DRAIN_TIMEOUT,
                self._calls.qsize(),
            )
        for task in self._tasks:
            task.cancel()
        for result in await asyncio.gather(*self._tasks, return_exceptions=True):
            if isinstance(result, Exception):
                self.log.error("signaling %s: a task failed", self.label, exc_info=result)
        self.protocol.connection_lost()
        if not self._ws.closed:
            await self.settle("closing the socket", self._ws.close())
        reason = self.protocol.close_reason or "disconnected"
        self.log.info("signaling %s: closed (%s)", self.label, reason)
        try:
            if self._handler is not None:
                await self._handler.on_close(reason)
        except Exception:
            self.log.exception("signaling %s: on_close failed", self.label)
        finally:
            self.finished.set()

    def _spawn(self, coro: Awaitable[None]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    async def flush(self) -> None:
        """Carry out the protocol's pending actions, in order."""
        async with self._lock:
            for action in self.protocol.actions():
                if isinstance(action, SendMessage):
                    await self._send(action.message)
                elif isinstance(action, CloseConnection):
                    await self.settle(
                        f"closing with {action.code}",
                        self._ws.close(code=action.code, message=action.reason.encode()[:120]),
                    )
                else:
                    self._calls.put_nowait(action)

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "error":
            self.log.info("signaling %s: error %s sent", self.label, message["code"])
        try:
            await self._ws.send_str(messages.encode(message))
        except Exception as exc:  # the socket went away under us; the reader will notice too
            self._failed(f"sending {message['type']!r}", exc)
            self.protocol.connection_lost()

    async def settle(self, what: str, step: Awaitable[object]) -> None:
        """Await one step of ending the connection whose failure must not stop the others
        (the socket may be gone already), and log it when it fails."""
        try:
            await step
        except Exception as exc:
            self._failed(what, exc)

    def _failed(self, what: str, exc: Exception) -> None:
        """A socket that went away is routine (info); anything else is a bug (with traceback)."""
        if isinstance(exc, ConnectionError | TimeoutError):
            self.log.info("signaling %s: %s failed: %r", self.label, what, exc)
        else:
            self.log.error("signaling %s: %s failed", self.label, what, exc_info=exc)

    async def _hello_deadline(self) -> None:
        await asyncio.sleep(self._hello_timeout)
        self.protocol.hello_timed_out()
        await self.flush()

    async def _keepalive(self) -> None:
        while not self.protocol.closed:
            await asyncio.sleep(self._ping_interval)
            self.protocol.keepalive_due()
            await self.flush()

    async def _dispatch(self) -> None:
        offer_answered = False  # candidates of a failed offer are dropped, not delivered
        while True:
            call = await self._calls.get()
            try:
                if self.protocol.closed and not isinstance(call, DeliverClientEvent):
                    continue  # no offers or candidates for a closed socket; events are data
                if isinstance(call, Authenticate):
                    await self._admit(call)
                elif self._handler is None:
                    continue
                elif isinstance(call, DeliverOffer):
                    offer_answered = False
                    if call.candidates_dropped:
                        self.log.info(
                            "signaling %s: %d candidates of the offer refused by the address "
                            "policy",
                            self.label,
                            call.candidates_dropped,
                        )
                    answer = await self._handler.on_offer(call.sdp, reconnect=call.reconnect)
                    offer_answered = True
                    self.protocol.answer_ready(answer)
                elif isinstance(call, DeliverCandidate):
                    if offer_answered:
                        await self._handler.on_candidate(call.candidate)
                elif isinstance(call, DeliverClientEvent):
                    await self._handler.on_client_event(call.event)
            except SignalingError as exc:
                if isinstance(call, Authenticate):
                    self.protocol.refuse(exc)
                elif isinstance(call, DeliverOffer):
                    self.protocol.offer_failed(exc)
                else:
                    self.protocol.report(exc)
            except Exception:
                self.log.exception(
                    "signaling %s: handler failed on %s", self.label, type(call).__name__
                )
                self.protocol.report(SignalingError("internal", "the server failed"))
            finally:
                self._calls.task_done()
            await self.flush()

    async def _admit(self, call: Authenticate) -> None:
        self._log_fields["tenant_id"] = call.claims.tenant_id
        channel = SignalingChannel(self, call.reconnect_secret)
        self._handler = await self._factory(call.claims, channel)
        self.protocol.accept(
            getattr(self._handler, "session_id", None),
            getattr(self._handler, "ice_servers", ()),
            getattr(self._handler, "reconnect_secret", None),
        )
        self._spawn(self._keepalive())


def _too_big(error: object) -> bool:
    """aiohttp refused a frame beyond its hard limit (and already closed with 1009)."""
    return isinstance(error, WebSocketError) and error.code == WSCloseCode.MESSAGE_TOO_BIG
